//! What each certificate kind says. Every line here reads from the one record being
//! certified and its own `household`, so no other resident's data can reach a page.

use kofu_core::records::{Member, ResidentRecord, Seal};
use kofu_proto::CertKind;

use crate::layout::{Flow, Style};

const SECTION_GAP: u32 = 10;

/// The body lines of `kind` for `record`.
pub(crate) fn body(record: &ResidentRecord, kind: CertKind) -> Flow {
    let mut flow = Flow::with_capacity(16 + 2 * record.household.len());
    match kind {
        CertKind::Residence => residence(&mut flow, record),
        CertKind::Seal => seal(&mut flow, record),
        CertKind::Tax => tax(&mut flow, record),
        CertKind::FamilyRegister => family_register(&mut flow, record),
    }
    flow
}

fn field(flow: &mut Flow, label: &str, value: &str) {
    flow.line(Style::Body, |t| {
        t.str(label).str(value);
    });
}

fn section(flow: &mut Flow, title: &str) {
    flow.gap(SECTION_GAP);
    flow.line(Style::Section, |t| {
        t.str(title);
    });
}

fn holder_fields(flow: &mut Flow, r: &ResidentRecord) {
    field(flow, "Full name: ", &r.full_name);
    flow.line(Style::Body, |t| {
        t.str("Date of birth: ").date(r.birth_date);
    });
    field(flow, "Address: ", &r.address);
}

fn municipality_field(flow: &mut Flow, r: &ResidentRecord) {
    flow.line(Style::Body, |t| {
        t.str("Municipality: ")
            .str(&r.municipality.name)
            .str(" (code ")
            .str(&r.municipality.code)
            .str(")");
    });
}

fn member_line(flow: &mut Flow, index: usize, m: &Member) {
    flow.line(Style::Body, |t| {
        t.num(index as u64 + 1)
            .str(". ")
            .str(&m.full_name)
            .str(" - ")
            .str(m.relation.label())
            .str(" - born ")
            .date(m.birth_date);
    });
}

fn closing(flow: &mut Flow, statement: &str) {
    flow.gap(2 * SECTION_GAP);
    flow.line(Style::Body, |t| {
        t.str(statement);
    });
}

fn residence(flow: &mut Flow, r: &ResidentRecord) {
    section(flow, "Resident");
    holder_fields(flow, r);
    municipality_field(flow, r);
    flow.line(Style::Body, |t| {
        t.str("Relation to head of household: ")
            .str(r.relation.label());
    });
    section(flow, "Members of the household");
    if r.household.is_empty() {
        field(flow, "", "No other members are recorded.");
    }
    for (i, m) in r.household.iter().enumerate() {
        member_line(flow, i, m);
    }
    closing(
        flow,
        "This is to certify that the above is a true extract of the resident register.",
    );
}

fn seal(flow: &mut Flow, r: &ResidentRecord) {
    section(flow, "Registered person");
    holder_fields(flow, r);
    municipality_field(flow, r);
    section(flow, "Seal registration");
    // The actor refuses non-registered seals before rendering; should it ever render one,
    // the page must say plainly that no valid registration is certified.
    match &r.seal {
        Seal::Registered {
            number,
            registered_on,
        } => {
            field(flow, "Registration number: ", number);
            flow.line(Style::Body, |t| {
                t.str("Registration date: ").date(*registered_on);
            });
            field(flow, "Status: ", "registered");
            closing(
                flow,
                "This is to certify that the seal of the above person is registered as shown.",
            );
        }
        Seal::Revoked { number, revoked_on } => {
            field(flow, "Registration number: ", number);
            flow.line(Style::Body, |t| {
                t.str("Status: revoked on ").date(*revoked_on);
            });
            closing(
                flow,
                "This document does not certify a valid seal registration.",
            );
        }
        Seal::NotRegistered => {
            field(flow, "Status: ", "no seal is registered");
            closing(
                flow,
                "This document does not certify a valid seal registration.",
            );
        }
    }
}

fn tax(flow: &mut Flow, r: &ResidentRecord) {
    section(flow, "Taxpayer");
    field(flow, "Full name: ", &r.full_name);
    field(flow, "Address: ", &r.address);
    municipality_field(flow, r);
    section(flow, "Income and taxation");
    match &r.tax {
        Some(tax) => {
            let total = tax
                .municipal_tax_yen
                .saturating_add(tax.prefectural_tax_yen);
            flow.line(Style::Body, |t| {
                t.str("Fiscal year: ").num(u64::from(tax.fiscal_year));
            });
            flow.line(Style::Body, |t| {
                t.str("Total income: ").yen(tax.income_yen);
            });
            flow.line(Style::Body, |t| {
                t.str("Municipal tax: ").yen(tax.municipal_tax_yen);
            });
            flow.line(Style::Body, |t| {
                t.str("Prefectural tax: ").yen(tax.prefectural_tax_yen);
            });
            flow.line(Style::Body, |t| {
                t.str("Total tax: ").yen(total);
            });
            closing(
                flow,
                "This is to certify that the above income and taxation are as recorded.",
            );
        }
        None => field(flow, "", "No taxation record is on file for this person."),
    }
}

fn family_register(flow: &mut Flow, r: &ResidentRecord) {
    section(flow, "Requester");
    holder_fields(flow, r);
    municipality_field(flow, r);
    section(flow, "Household summary");
    flow.line(Style::Body, |t| {
        t.str("Members: ").num(r.household.len() as u64);
    });
    for (i, m) in r.household.iter().enumerate() {
        member_line(flow, i, m);
    }
    flow.gap(SECTION_GAP);
    field(
        flow,
        "",
        "Each member's entry follows on a page of its own.",
    );
    let count = r.household.len() as u64;
    for (i, m) in r.household.iter().enumerate() {
        flow.page_break();
        flow.line(Style::Section, |t| {
            t.str("Member ").num(i as u64 + 1).str(" of ").num(count);
        });
        field(flow, "Full name: ", &m.full_name);
        field(flow, "Relation: ", m.relation.label());
        flow.line(Style::Body, |t| {
            t.str("Date of birth: ").date(m.birth_date);
        });
        field(flow, "Household address: ", &r.address);
        closing(
            flow,
            "This is to certify that the above entry is recorded in the family register.",
        );
    }
}
