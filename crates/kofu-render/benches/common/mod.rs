//! The record the benchmark renders: a household of four in Shinjuku, names in kanji
//! with readings, as the synthetic population and real registries hold them.

use kofu_core::records::{
    Date, Member, Municipality, Relation, ResidentRecord, Seal, Sex, TaxRecord,
};
use kofu_proto::{CardId, CertKind};
use kofu_render::RenderRequest;

fn date(year: u16, month: u8, day: u8) -> Date {
    Date { year, month, day }
}

pub fn record() -> ResidentRecord {
    let household = [
        (
            "田中 浩",
            "タナカ ヒロシ",
            Sex::Male,
            Relation::Head,
            date(1978, 4, 2),
        ),
        (
            "田中 由紀",
            "タナカ ユキ",
            Sex::Female,
            Relation::Spouse,
            date(1981, 9, 17),
        ),
        (
            "田中 蒼空",
            "タナカ ソラ",
            Sex::Male,
            Relation::Child,
            date(2010, 1, 30),
        ),
        (
            "田中 芽依",
            "タナカ メイ",
            Sex::Female,
            Relation::Child,
            date(2014, 6, 8),
        ),
    ]
    .into_iter()
    .map(|(name, kana, sex, relation, birth_date)| Member {
        full_name: name.to_owned(),
        full_name_kana: kana.to_owned(),
        sex,
        birth_date,
        relation,
    })
    .collect();
    ResidentRecord {
        card_id: CardId::parse("0123456789ABCDEF").expect("valid card id"),
        version: 7,
        full_name: "田中 由紀".to_owned(),
        full_name_kana: "タナカ ユキ".to_owned(),
        sex: Sex::Female,
        birth_date: date(1981, 9, 17),
        relation: Relation::Spouse,
        address: "〒160-0023 東京都新宿区西新宿三丁目14番1-305号".to_owned(),
        municipality: Municipality {
            code: "131041".to_owned(),
            name: "東京都新宿区".to_owned(),
        },
        household_id: "H-000123".to_owned(),
        household,
        seal: Seal::Registered {
            number: "SEAL-131041-000123".to_owned(),
            registered_on: date(2015, 3, 1),
        },
        tax: Some(TaxRecord {
            fiscal_year: 2025,
            income_yen: 5_230_000,
            municipal_tax_yen: 214_300,
            prefectural_tax_yen: 142_900,
        }),
        restricted: false,
        card_revoked: false,
        card_public_key: [9; 32],
    }
}

pub fn request(record: &ResidentRecord, kind: CertKind) -> RenderRequest<'_> {
    RenderRequest {
        record,
        kind,
        copies: 1,
        serial: "131041-20261121-000042",
        issued_at: "2026-11-21T09:00:00Z",
        session_id: "s0123-AbCdEfGhIjKlMnOpQrStUvWxYz012345",
        kiosk_id: "SEJ-13104-0042-01",
    }
}
