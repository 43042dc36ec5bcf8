//! What each certificate kind says, laid out the way municipalities issue them (field
//! names, order, certifying sentence). Every line here reads from the one record being
//! certified and its own `household`, so no other resident's data can reach a page.

use kofu_core::records::{Date, Member, Relation, ResidentRecord, Seal, Sex};
use kofu_core::wareki;
use kofu_proto::CertKind;

use crate::layout::{Flow, LEFT, RIGHT};
use crate::text::{self, Face};

/// Columns of the household tables: name, date of birth, sex, relation.
const NAME_X: u32 = LEFT + 6;
const BIRTH_X: u32 = LEFT + 190;
const SEX_X: u32 = LEFT + 310;
const RELATION_X: u32 = LEFT + 350;

/// The body lines of `kind` for `record`; `issued` is the issue date as printed.
pub(crate) fn body(record: &ResidentRecord, kind: CertKind, issued: &str) -> Flow {
    let mut flow = Flow::with_capacity(24 + 3 * record.household.len());
    match kind {
        CertKind::Residence => residence(&mut flow, record, issued),
        CertKind::Seal => seal(&mut flow, record, issued),
        CertKind::Tax => tax(&mut flow, record, issued),
        CertKind::FamilyRegister => family_register(&mut flow, record, issued),
    }
    flow
}

/// The certifying sentence, the date and the office with its seal, as they close every
/// certificate.
fn certify(flow: &mut Flow, r: &ResidentRecord, statement: &str, issued: &str) {
    flow.gap(18);
    flow.para(11, LEFT + 12, statement);
    flow.gap(10);
    flow.para(11, LEFT + 24, issued);
    let office = r.municipality.mayor();
    let width = text::width_points(Face::Mincho, 14, &office);
    flow.office(RIGHT.saturating_sub(width + 64), &office);
}

/// The address as a register prints it: without the postal code kept in front.
fn street(address: &str) -> &str {
    match address.strip_prefix('〒') {
        Some(rest) => rest.split_once(' ').map_or(address, |(_, street)| street),
        None => address,
    }
}

/// Whether `m` is older than the household's head (for 兄/弟, 姉/妹).
fn elder_than_head(r: &ResidentRecord, m: &Member) -> bool {
    r.household
        .iter()
        .find(|h| h.relation == Relation::Head)
        .is_some_and(|h| m.birth_date < h.birth_date)
}

fn residence(flow: &mut Flow, r: &ResidentRecord, issued: &str) {
    flow.row("住所", &r.address);
    if let Some(head) = r.household.iter().find(|m| m.relation == Relation::Head) {
        flow.name_row("世帯主", &head.full_name, &head.full_name_kana);
    }
    flow.close_table();
    flow.heading("世帯員");
    flow.cells(
        16,
        true,
        &[
            (NAME_X, Face::Gothic, 9, "氏名"),
            (BIRTH_X, Face::Gothic, 9, "生年月日"),
            (SEX_X, Face::Gothic, 9, "性別"),
            (RELATION_X, Face::Gothic, 9, "続柄"),
        ],
    );
    if r.household.is_empty() {
        flow.row("", "記録されている世帯員はありません。");
    }
    let mut birth = String::with_capacity(24);
    for m in &r.household {
        birth.clear();
        wareki::push_date(&mut birth, m.birth_date);
        birth.push('生');
        let relation = m.relation.label(m.sex, elder_than_head(r, m));
        flow.cells(13, true, &[(NAME_X, Face::Mincho, 7, &m.full_name_kana)]);
        flow.cells(
            15,
            false,
            &[
                (NAME_X, Face::Mincho, 12, &m.full_name),
                (BIRTH_X, Face::Mincho, 11, &birth),
                (SEX_X, Face::Mincho, 11, m.sex.label()),
                (RELATION_X, Face::Mincho, 11, relation),
            ],
        );
    }
    flow.row(
        "備考",
        "世帯全員の住民票の写し（個人番号及び住民票コードの記載を省略）",
    );
    flow.close_table();
    certify(
        flow,
        r,
        "この写しは、世帯全員の住民票の原本と相違ないことを証明する。",
        issued,
    );
}

fn holder_rows(flow: &mut Flow, r: &ResidentRecord) {
    flow.name_row("氏名", &r.full_name, &r.full_name_kana);
    flow.row("生年月日", &wareki::date(r.birth_date));
    flow.row("性別", r.sex.label());
    flow.row("住所", &r.address);
}

fn seal(flow: &mut Flow, r: &ResidentRecord, issued: &str) {
    // The actor refuses seals that are not registered before rendering; should it ever
    // render one, the page must say plainly that no valid registration is certified.
    match &r.seal {
        Seal::Registered {
            number,
            registered_on,
        } => {
            flow.impression("印影", 112);
            holder_rows(flow, r);
            flow.row("登録番号", number);
            flow.row("登録年月日", &wareki::date(*registered_on));
            flow.close_table();
            certify(
                flow,
                r,
                "この写しは、登録されている印影と相違ないことを証明する。",
                issued,
            );
        }
        Seal::Revoked { number, revoked_on } => {
            holder_rows(flow, r);
            flow.row("登録番号", number);
            let mut status = wareki::date(*revoked_on);
            status.push_str(" 廃止");
            flow.row("登録状況", &status);
            flow.close_table();
            certify(
                flow,
                r,
                "上記の印鑑登録は廃止されています。この書面は印鑑登録を証明するものではありません。",
                issued,
            );
        }
        Seal::NotRegistered => {
            holder_rows(flow, r);
            flow.row("登録状況", "印鑑登録はありません");
            flow.close_table();
            certify(
                flow,
                r,
                "この書面は印鑑登録を証明するものではありません。",
                issued,
            );
        }
    }
}

/// The local taxes by the names of the prefecture and municipality that levy them:
/// Tokyo's wards levy 特別区民税 and the metropolis 都民税.
fn tax_names(r: &ResidentRecord) -> (&'static str, &'static str) {
    let name = r.municipality.name.as_str();
    let local = if name.starts_with("東京都") && name.ends_with('区') {
        "特別区民税"
    } else {
        "市町村民税"
    };
    let prefectural = match name {
        n if n.starts_with("東京都") => "都民税",
        n if n.starts_with("北海道") => "道民税",
        n if n.starts_with("京都府") || n.starts_with("大阪府") => "府民税",
        _ => "県民税",
    };
    (local, prefectural)
}

fn tax(flow: &mut Flow, r: &ResidentRecord, issued: &str) {
    let Some(tax) = &r.tax else {
        holder_rows(flow, r);
        flow.row("課税状況", "該当する年度の課税記録はありません");
        flow.close_table();
        certify(flow, r, "上記のとおり証明する。", issued);
        return;
    };
    // A fiscal year's local taxes are assessed on the previous calendar year's income.
    let mut year = wareki::fiscal_year(tax.fiscal_year);
    year.push('（');
    let income_year = Date::ymd(tax.fiscal_year.saturating_sub(1), 12, 31);
    wareki::push_year(&mut year, income_year);
    year.push_str("中の所得）");
    flow.row("年度", &year);
    holder_rows(flow, r);
    flow.close_table();
    flow.heading("所得及び課税の状況");
    let (local, prefectural) = tax_names(r);
    let total = tax
        .municipal_tax_yen
        .saturating_add(tax.prefectural_tax_yen);
    let mut amount = String::with_capacity(24);
    for (label, yen) in [
        ("総所得金額", tax.income_yen),
        (local, tax.municipal_tax_yen),
        (prefectural, tax.prefectural_tax_yen),
        ("年税額合計", total),
    ] {
        amount.clear();
        text::push_yen(&mut amount, yen);
        flow.row(label, &amount);
    }
    flow.close_table();
    certify(flow, r, "上記のとおり相違ないことを証明する。", issued);
}

/// The 続柄 a family register prints: children by birth order among those of their sex
/// (長男, 二女, ...), the head as 筆頭者.
fn register_relation(r: &ResidentRecord, index: usize) -> String {
    const ORDINALS: [&str; 9] = ["長", "二", "三", "四", "五", "六", "七", "八", "九"];
    let m = &r.household[index];
    match m.relation {
        Relation::Head => "筆頭者".to_owned(),
        Relation::Child => {
            let rank = r.household[..index]
                .iter()
                .filter(|o| o.relation == Relation::Child && o.sex == m.sex)
                .count();
            let ordinal = ORDINALS.get(rank).copied().unwrap_or("");
            let sex = match m.sex {
                Sex::Male => "男",
                Sex::Female => "女",
            };
            format!("{ordinal}{sex}")
        }
        other => other.label(m.sex, elder_than_head(r, m)).to_owned(),
    }
}

fn family_register(flow: &mut Flow, r: &ResidentRecord, issued: &str) {
    flow.row("本籍", street(&r.address));
    if let Some(head) = r.household.iter().find(|m| m.relation == Relation::Head) {
        flow.name_row("筆頭者", &head.full_name, &head.full_name_kana);
    }
    flow.close_table();
    let mut heading = String::from("戸籍に記録されている者（");
    text::push_u64(&mut heading, r.household.len() as u64);
    heading.push_str("名）");
    flow.heading(&heading);
    flow.cells(
        16,
        true,
        &[
            (NAME_X, Face::Gothic, 9, "氏名"),
            (BIRTH_X, Face::Gothic, 9, "生年月日"),
            (RELATION_X, Face::Gothic, 9, "続柄"),
        ],
    );
    let mut birth = String::with_capacity(24);
    for (i, m) in r.household.iter().enumerate() {
        birth.clear();
        wareki::push_date(&mut birth, m.birth_date);
        flow.cells(
            17,
            true,
            &[
                (NAME_X, Face::Mincho, 11, &m.full_name),
                (BIRTH_X, Face::Mincho, 11, &birth),
                (RELATION_X, Face::Mincho, 11, &register_relation(r, i)),
            ],
        );
    }
    flow.close_table();
    flow.gap(8);
    flow.para(
        10,
        LEFT + 12,
        "以下、戸籍に記録されている者ごとに頁を改めて記載する。",
    );
    let count = r.household.len();
    for (i, m) in r.household.iter().enumerate() {
        flow.page_break();
        let mut heading = String::from("戸籍に記録されている者　");
        text::push_u64(&mut heading, i as u64 + 1);
        heading.push('／');
        text::push_u64(&mut heading, count as u64);
        flow.heading(&heading);
        flow.name_row("氏名", &m.full_name, &m.full_name_kana);
        flow.row("生年月日", &wareki::date(m.birth_date));
        flow.row("続柄", &register_relation(r, i));
        let mut birth = String::from("出生　【出生日】");
        wareki::push_date(&mut birth, m.birth_date);
        flow.row("身分事項", &birth);
        flow.close_table();
    }
    certify(
        flow,
        r,
        "これは、戸籍に記録されている事項の全部を証明した書面である。",
        issued,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streets_drop_the_postal_code() {
        assert_eq!(
            street("〒160-0023 東京都新宿区西新宿二丁目8番1号"),
            "東京都新宿区西新宿二丁目8番1号"
        );
        assert_eq!(street("東京都新宿区"), "東京都新宿区");
    }
}
