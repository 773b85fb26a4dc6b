//! Finance reports, computed from the entries alone so that they tie out with the audit.
//!
//! A lot past its expiry whose expire entry is not written yet (the expiry task has not run)
//! counts as expired at its expiry instant, exactly as the task will write it: reports never
//! depend on when the task last ran. Reports read; they never write.

use super::connection::read_snapshot;
use super::models::{LotRow, MovementRow};
use super::{ms, repo, Conn, PostError};
use crate::domain::ProgramTz;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Points outstanding in one group, and what they cost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Outstanding {
    pub key: String,
    /// Outstanding points, pending ones included.
    pub points: i64,
    /// Of those, still in the program's pending period.
    pub pending: i64,
    /// Points members owe (refunds under `allow_negative` that found their balance short),
    /// already taken off `points`: the group's points are what its members' balances hold.
    pub owed: i64,
    /// `points × point_cost` in the base currency, exact (round when booking); absent without a
    /// configured point cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<Decimal>,
}

/// What the program owes its members as of one instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Liability {
    pub as_of: String,
    pub currency: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub point_cost: Option<Decimal>,
    pub total: Outstanding,
    /// By the month the points expire (`YYYY-MM`, program time zone; `never`).
    pub by_expiry_month: Vec<Outstanding>,
    /// By the quarter the points expire (`YYYY-Qn`; `never`).
    pub by_expiry_quarter: Vec<Outstanding>,
    /// By point type: `E`, `A`.
    pub by_type: Vec<Outstanding>,
    /// By campaign code (`""`: E points, which have none).
    pub by_campaign: Vec<Outstanding>,
}

/// How a movements report groups its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// The local day (program time zone) the movement is effective.
    Day,
    /// The store of the trade the movement belongs to (a burn: where it was spent).
    Store,
    /// The campaign of the points moved (`""`: E points).
    Campaign,
}

impl GroupBy {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim() {
            "day" => Ok(Self::Day),
            "store" => Ok(Self::Store),
            "campaign" => Ok(Self::Campaign),
            other => Err(format!("must be day, store or campaign, got {other:?}")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Store => "store",
            Self::Campaign => "campaign",
        }
    }
}

/// Points moved in one group over the period. All are magnitudes except `net`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Moved {
    pub key: String,
    pub earned: i64,
    pub burned: i64,
    pub expired: i64,
    /// Taken back by refunds: from the refunded grants, and from new points paying a debt off
    /// (and, for `allow_negative` refunds of older releases, from the member's other points).
    pub reversed: i64,
    /// Burned points given back by refunds.
    pub returned: i64,
    /// Points a refund could not take back and the member now owes (`allow_negative`).
    pub owed: i64,
    /// Owed points paid off by later earns.
    pub debt_paid: i64,
    /// earned − burned − expired − reversed + returned − owed + debt_paid.
    pub net: i64,
    /// Points a refund could not take back because they were already spent or expired, and
    /// wrote off (`record_shortfall`). Not in `net`: they had left the balance already.
    pub written_off: i64,
    /// Written-off points recovered: a refund of the trade that had spent them gave them back
    /// to the grant, and the refund that wrote them off took them then. Not in `net` either.
    pub recovered: i64,
    /// Each line in money (`× point_cost`, exact; round when booking): `earned` is revenue
    /// deferred, `burned` and `expired` are revenue released. Absent without a point cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amounts: Option<MovedAmounts>,
}

/// A group's movements in the base currency.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MovedAmounts {
    pub earned: Decimal,
    pub burned: Decimal,
    pub expired: Decimal,
    pub reversed: Decimal,
    pub returned: Decimal,
    pub owed: Decimal,
    pub debt_paid: Decimal,
    pub net: Decimal,
    pub written_off: Decimal,
    pub recovered: Decimal,
}

impl Moved {
    /// The lines the report lists, in its order: (name, points).
    fn lines(&self) -> [(&'static str, i64); 10] {
        [
            ("earned", self.earned),
            ("burned", self.burned),
            ("expired", self.expired),
            ("reversed", self.reversed),
            ("returned", self.returned),
            ("owed", self.owed),
            ("debt_paid", self.debt_paid),
            ("net", self.net),
            ("written_off", self.written_off),
            ("recovered", self.recovered),
        ]
    }

    /// The same movements, with their amounts at `point_cost`.
    fn priced(self, point_cost: Option<Decimal>) -> Self {
        let amounts = point_cost.map(|cost| {
            let [earned, burned, expired, reversed, returned, owed, debt_paid, net, written_off, recovered] =
                self.lines().map(|(_, points)| money(cost, points));
            MovedAmounts {
                earned,
                burned,
                expired,
                reversed,
                returned,
                owed,
                debt_paid,
                net,
                written_off,
                recovered,
            }
        });
        Self { amounts, ..self }
    }
}

/// `points × cost`, exact.
fn money(cost: Decimal, points: i64) -> Decimal {
    (cost * Decimal::from(points)).normalize()
}

impl Moved {
    fn add(&mut self, kind: &str, points: i64) {
        match (kind, points > 0) {
            ("earn", _) => self.earned += points,
            ("burn", _) => self.burned -= points,
            ("expire", _) => self.expired -= points,
            ("reverse", false) => self.reversed -= points,
            ("reverse", true) => self.returned += points,
            ("owed", _) => self.owed -= points,
            ("paid", _) => self.debt_paid += points,
            ("written_off", _) => {
                self.written_off += points;
                return;
            }
            ("recovered", _) => {
                self.recovered += points;
                return;
            }
            _ => unreachable!("entry kinds are checked by the database"),
        }
        self.net += points;
    }
}

/// Every point movement over `[from, to)`, and the roll-forward:
/// `opening + earned − burned − expired − reversed + returned − owed + debt_paid = closing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Movements {
    pub from: String,
    pub to: String,
    pub by: &'static str,
    /// The program's base currency: what `*_amount` figures are in.
    pub currency: String,
    /// The configured cost of a point; absent (and so every amount) without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub point_cost: Option<Decimal>,
    /// Outstanding points just before `from`.
    pub opening: i64,
    pub totals: Moved,
    /// Outstanding points just before `to`, summed on their own.
    pub closing: i64,
    /// Whether the roll-forward holds; always true in a sound ledger.
    pub ties_out: bool,
    /// `opening` and `closing` in money (`× point_cost`, exact): the deferred revenue at each end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opening_amount: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closing_amount: Option<Decimal>,
    pub rows: Vec<Moved>,
}

/// Checks a report period: `from <= to <= now`. On a problem: the field and what is wrong.
pub fn check_period(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), (&'static str, String)> {
    if to > now {
        return Err(("to", format!("{} is in the future", rfc3339(to))));
    }
    if from > to {
        return Err((
            "from",
            format!("{} is after to {}", rfc3339(from), rfc3339(to)),
        ));
    }
    Ok(())
}

/// Lots a report reads at a time: it holds one batch of lots and their movements, whatever
/// the ledger's size.
pub const LOTS_PER_BATCH: i64 = 2_000;

/// Every lot in id order, `lots_per_batch` at a time, from one snapshot of the ledger, each
/// batch with every movement of its lots effective before `before_ms`: the entries, the
/// expiries the task has yet to write (as of `now_ms`), the debt movements (owed negative, paid
/// positive; against the refunded grant's lot) and, from `write_offs_from` on, the write-offs.
fn for_each_batch(
    conn: &mut Conn,
    lots_per_batch: i64,
    (before_ms, now_ms): (i64, i64),
    write_offs_from: Option<i64>,
    mut each: impl FnMut(&mut Conn, &[LotRow], Vec<MovementRow>) -> Result<(), PostError>,
) -> Result<(), PostError> {
    read_snapshot(conn, |conn| {
        let mut after_id = 0;
        loop {
            let lots = repo::lots_after(conn, after_id, lots_per_batch)?;
            let (Some(first), Some(last)) = (lots.first(), lots.last()) else {
                return Ok(());
            };
            // The batch is every lot with an id in first..=last.
            let range = (first.id, last.id);
            after_id = last.id;
            let mut rows = repo::lot_entries_before(conn, range, before_ms)?;
            rows.extend(repo::lot_debt_movements_before(conn, range, before_ms)?);
            rows.extend(expiries_to_write(&lots, before_ms, now_ms));
            if let Some(from_ms) = write_offs_from {
                rows.extend(
                    repo::lot_write_offs_before(conn, range, before_ms)?
                        .into_iter()
                        .chain(repo::lot_recoveries_before(conn, range, before_ms)?)
                        .filter(|w| w.effective_at_ms >= from_ms),
                );
            }
            each(conn, &lots, rows)?;
        }
    })
}

/// The expiries the task has yet to write, as it will write them, effective before
/// `before_ms`.
fn expiries_to_write(
    lots: &[LotRow],
    before_ms: i64,
    now_ms: i64,
) -> impl Iterator<Item = MovementRow> + '_ {
    lots.iter().filter_map(move |lot| {
        let due = lot.expires_at_ms.is_some_and(|at| at <= now_ms);
        match lot.expiry_effective_at_ms() {
            Some(at) if due && lot.remaining > 0 && at < before_ms => Some(MovementRow {
                lot_id: lot.id,
                trade_id: Some(lot.trade_id),
                kind: "expire".to_string(),
                points: -lot.remaining,
                effective_at_ms: at,
            }),
            _ => None,
        }
    })
}

fn expiry_keys(lot: &LotRow) -> (String, String) {
    match lot
        .expire_date
        .as_deref()
        .and_then(|d| d.parse::<NaiveDate>().ok())
    {
        Some(date) => (
            format!("{:04}-{:02}", date.year(), date.month()),
            format!("{:04}-Q{}", date.year(), (date.month() - 1) / 3 + 1),
        ),
        None => ("never".to_string(), "never".to_string()),
    }
}

fn rfc3339(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The liability as of `as_of` (at most `now`): every entry effective at or before it, grouped
/// by the attributes of its lot. Read a batch of lots at a time, from one snapshot.
pub fn liability(
    conn: &mut Conn,
    as_of: DateTime<Utc>,
    now: DateTime<Utc>,
    currency: &str,
    point_cost: Option<Decimal>,
) -> Result<Liability, PostError> {
    liability_in_batches(conn, (as_of, now), currency, point_cost, LOTS_PER_BATCH)
}

/// `liability`, reading `lots_per_batch` lots at a time.
pub fn liability_in_batches(
    conn: &mut Conn,
    (as_of, now): (DateTime<Utc>, DateTime<Utc>),
    currency: &str,
    point_cost: Option<Decimal>,
    lots_per_batch: i64,
) -> Result<Liability, PostError> {
    assert!(as_of <= now, "reports look back, never ahead");
    let as_of_ms = ms(as_of);
    let mut sums = LiabilitySums::default();
    for_each_batch(
        conn,
        lots_per_batch,
        (as_of_ms + 1, ms(now)),
        None,
        |_, lots, rows| {
            sums.add(lots, &rows, as_of_ms);
            Ok(())
        },
    )?;
    Ok(sums.finish(currency, point_cost, as_of))
}

/// The liability's groups and total, summed a batch of lots at a time.
#[derive(Default)]
struct LiabilitySums {
    /// By expiry month, expiry quarter, type, campaign.
    groups: [BTreeMap<String, Outstanding>; 4],
    total: Outstanding,
}

impl LiabilitySums {
    /// Adds `lots`, with `rows`: every movement of those lots (and only of those).
    fn add(&mut self, lots: &[LotRow], rows: &[MovementRow], as_of_ms: i64) {
        // Per lot: (its points, what its refunded grant's members owe).
        let mut by_lot: HashMap<i64, (i64, i64)> = HashMap::new();
        for row in rows {
            let slot = by_lot.entry(row.lot_id).or_default();
            match row.kind.as_str() {
                "owed" | "paid" => slot.1 -= row.points,
                _ => slot.0 += row.points,
            }
        }
        for lot in lots {
            let (held, owed) = by_lot.get(&lot.id).copied().unwrap_or((0, 0));
            if held == 0 && owed == 0 {
                continue;
            }
            let points = held - owed;
            let pending = if lot.available_at_ms > as_of_ms {
                held
            } else {
                0
            };
            let (month, quarter) = expiry_keys(lot);
            let keys = [
                month,
                quarter,
                lot.point_type.clone(),
                lot.campaign_code.clone(),
            ];
            for (group, key) in self.groups.iter_mut().zip(keys) {
                let slot = group.entry(key.clone()).or_insert_with(|| Outstanding {
                    key,
                    ..Outstanding::default()
                });
                slot.points += points;
                slot.pending += pending;
                slot.owed += owed;
            }
            self.total.points += points;
            self.total.pending += pending;
            self.total.owed += owed;
        }
    }

    fn finish(
        self,
        currency: &str,
        point_cost: Option<Decimal>,
        as_of: DateTime<Utc>,
    ) -> Liability {
        let priced = |mut o: Outstanding| {
            o.amount = point_cost.map(|cost| money(cost, o.points));
            o
        };
        let [by_month, by_quarter, by_type, by_campaign] = self
            .groups
            .map(|g| g.into_values().map(priced).collect::<Vec<_>>());
        Liability {
            as_of: rfc3339(as_of),
            currency: currency.to_string(),
            point_cost,
            total: priced(Outstanding {
                key: "total".to_string(),
                ..self.total
            }),
            by_expiry_month: by_month,
            by_expiry_quarter: by_quarter,
            by_type,
            by_campaign,
        }
    }
}

#[cfg(test)]
fn liability_of(
    lots: &[LotRow],
    rows: &[MovementRow],
    as_of_ms: i64,
    currency: &str,
    point_cost: Option<Decimal>,
    as_of: DateTime<Utc>,
) -> Liability {
    let mut sums = LiabilitySums::default();
    sums.add(lots, rows, as_of_ms);
    sums.finish(currency, point_cost, as_of)
}

/// How a report prices its points: the base currency, and the cost of a point if configured.
#[derive(Debug, Clone, Copy)]
pub struct Pricing<'a> {
    pub currency: &'a str,
    pub point_cost: Option<Decimal>,
}

/// Movements over `[from, to)` (`to` at most `now`), grouped `by`, priced at `pricing`. Read a
/// batch of lots at a time, from one snapshot.
pub fn movements(
    conn: &mut Conn,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    by: GroupBy,
    tz: &ProgramTz,
    pricing: Pricing,
    now: DateTime<Utc>,
) -> Result<Movements, PostError> {
    movements_in_batches(conn, (from, to, now), by, tz, pricing, LOTS_PER_BATCH)
}

/// `movements`, reading `lots_per_batch` lots at a time.
pub fn movements_in_batches(
    conn: &mut Conn,
    (from, to, now): (DateTime<Utc>, DateTime<Utc>, DateTime<Utc>),
    by: GroupBy,
    tz: &ProgramTz,
    pricing: Pricing,
    lots_per_batch: i64,
) -> Result<Movements, PostError> {
    assert!(from <= to && to <= now, "a period in the past");
    let from_ms = ms(from);
    let mut opening = 0;
    let mut closing = 0;
    let mut totals = Moved {
        key: "total".to_string(),
        ..Moved::default()
    };
    let mut groups: BTreeMap<String, Moved> = BTreeMap::new();
    for_each_batch(
        conn,
        lots_per_batch,
        (ms(to), ms(now)),
        Some(from_ms),
        |conn, lots, rows| {
            let lot_by_id: HashMap<i64, &LotRow> = lots.iter().map(|l| (l.id, l)).collect();
            let stores: HashMap<i64, String> = match by {
                GroupBy::Store => {
                    let mut ids: Vec<i64> = rows.iter().filter_map(|r| r.trade_id).collect();
                    ids.sort_unstable();
                    ids.dedup();
                    let mut stores = HashMap::new();
                    for chunk in ids.chunks(1_000) {
                        stores.extend(repo::trade_stores(conn, chunk)?);
                    }
                    stores
                }
                _ => HashMap::new(),
            };
            for row in &rows {
                if row.kind != "written_off" && row.kind != "recovered" {
                    closing += row.points;
                }
                if row.effective_at_ms < from_ms {
                    opening += row.points;
                    continue;
                }
                let key = match by {
                    GroupBy::Day => DateTime::<Utc>::from_timestamp_millis(row.effective_at_ms)
                        .map(|at| tz.local_date(at).to_string())
                        .unwrap_or_default(),
                    GroupBy::Store => row
                        .trade_id
                        .and_then(|id| stores.get(&id).cloned())
                        .unwrap_or_default(),
                    GroupBy::Campaign => lot_by_id
                        .get(&row.lot_id)
                        .map(|l| l.campaign_code.clone())
                        .unwrap_or_default(),
                };
                groups
                    .entry(key.clone())
                    .or_insert_with(|| Moved {
                        key,
                        ..Moved::default()
                    })
                    .add(&row.kind, row.points);
                totals.add(&row.kind, row.points);
            }
            Ok(())
        },
    )?;
    let cost = pricing.point_cost;
    Ok(Movements {
        from: rfc3339(from),
        to: rfc3339(to),
        by: by.as_str(),
        currency: pricing.currency.to_string(),
        point_cost: cost,
        opening,
        ties_out: opening + totals.net == closing,
        totals: totals.priced(cost),
        closing,
        opening_amount: cost.map(|c| money(c, opening)),
        closing_amount: cost.map(|c| money(c, closing)),
        rows: groups.into_values().map(|g| g.priced(cost)).collect(),
    })
}

/// A text field as a spreadsheet must not run it: a key beginning with `=`, `+`, `-`, `@` or a
/// tab (a store or campaign code from outside) is written after a `'`, so finance opening the
/// file does not run a formula.
fn text_field(text: &str) -> String {
    match text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        true => format!("'{text}"),
        false => text.to_string(),
    }
}

/// Rows as CSV (RFC 4180: CRLF line ends, fields quoted when they must be).
fn csv_text(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    let written = writer.write_record(header).and_then(|()| {
        rows.into_iter()
            .try_for_each(|row| writer.write_record(&row))
    });
    written.expect("writing to memory does not fail");
    let bytes = writer
        .into_inner()
        .expect("writing to memory does not fail");
    String::from_utf8(bytes).expect("the fields are UTF-8")
}

impl Liability {
    /// `dimension,key,points,pending,owed,amount`: the total first, then each grouping.
    pub fn to_csv(&self) -> String {
        let groups = [
            ("total", std::slice::from_ref(&self.total)),
            ("expiry_month", &self.by_expiry_month[..]),
            ("expiry_quarter", &self.by_expiry_quarter[..]),
            ("type", &self.by_type[..]),
            ("campaign", &self.by_campaign[..]),
        ];
        let rows = groups.into_iter().flat_map(|(dimension, list)| {
            list.iter().map(move |o| {
                vec![
                    dimension.to_string(),
                    text_field(&o.key),
                    o.points.to_string(),
                    o.pending.to_string(),
                    o.owed.to_string(),
                    o.amount.map(|a| a.to_string()).unwrap_or_default(),
                ]
            })
        });
        csv_text(
            &["dimension", "key", "points", "pending", "owed", "amount"],
            rows,
        )
    }
}

impl Movements {
    /// `key,opening,earned,burned,expired,reversed,returned,owed,debt_paid,net,closing,
    /// written_off,recovered`: a row per group, then `total` with the opening and closing
    /// balances. With a point cost, each figure again in money after them (`opening_amount`,
    /// `earned_amount`, …).
    pub fn to_csv(&self) -> String {
        // The figures of a row in the header's order; `opening` and `closing` in `total` only.
        let line = |m: &Moved, ends: Option<(i64, i64)>| {
            let mut points = vec![ends.map(|e| e.0)];
            points.extend(m.lines()[..8].iter().map(|(_, p)| Some(*p)));
            points.extend([ends.map(|e| e.1), Some(m.written_off), Some(m.recovered)]);
            let mut row = vec![text_field(&m.key)];
            row.extend(
                points
                    .iter()
                    .map(|p| p.map(|p| p.to_string()).unwrap_or_default()),
            );
            if let Some(cost) = self.point_cost {
                row.extend(
                    points
                        .iter()
                        .map(|p| p.map(|p| money(cost, p).to_string()).unwrap_or_default()),
                );
            }
            row
        };
        let rows = self
            .rows
            .iter()
            .map(|row| line(row, None))
            .chain([line(&self.totals, Some((self.opening, self.closing)))]);
        let names = [
            "opening",
            "earned",
            "burned",
            "expired",
            "reversed",
            "returned",
            "owed",
            "debt_paid",
            "net",
            "closing",
            "written_off",
            "recovered",
        ];
        let mut header: Vec<String> = std::iter::once("key".to_string())
            .chain(names.iter().map(|n| n.to_string()))
            .collect();
        if self.point_cost.is_some() {
            header.extend(names.iter().map(|n| format!("{n}_amount")));
        }
        let header: Vec<&str> = header.iter().map(String::as_str).collect();
        csv_text(&header, rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_it_must_and_never_writes_a_formula() {
        let text = csv_text(
            &["key", "points"],
            [
                vec![text_field("DP01, \"Central\""), "-5".to_string()],
                vec![text_field("=HYPERLINK(\"x\")"), "3".to_string()],
                vec![text_field("-SALE"), "0".to_string()],
            ],
        );
        assert_eq!(
            text,
            "key,points\r\n\"DP01, \"\"Central\"\"\",-5\r\n\"'=HYPERLINK(\"\"x\"\")\",3\r\n'-SALE,0\r\n"
        );
    }

    fn lot(id: i64, point_type: &str, campaign: &str, expire_date: Option<&str>) -> LotRow {
        LotRow {
            id,
            member_id: 1,
            trade_id: id,
            point_type: point_type.to_string(),
            campaign_code: campaign.to_string(),
            remark: String::new(),
            expire_type: "KDP".to_string(),
            expire_date: expire_date.map(String::from),
            expires_at_ms: None,
            available_at_ms: 0,
            points: 100,
            remaining: 100,
            ruleset_version: String::new(),
            created_at_ms: 0,
        }
    }

    fn entry(lot_id: i64, kind: &str, points: i64) -> MovementRow {
        MovementRow {
            lot_id,
            trade_id: Some(lot_id),
            kind: kind.to_string(),
            points,
            effective_at_ms: 0,
        }
    }

    #[test]
    fn liability_groups_and_prices_outstanding_points() {
        let lots = [
            lot(1, "E", "", Some("2026-02-28")),
            lot(2, "A", "X,Y", Some("2026-03-31")),
            lot(3, "E", "", None),
        ];
        let rows = [
            entry(1, "earn", 100),
            entry(1, "burn", -30),
            entry(2, "earn", 50),
            entry(3, "earn", 7),
            // A refund of lot 2's grant left 20 owed; a later earn paid 5 of it.
            entry(2, "owed", -20),
            entry(2, "paid", 5),
        ];
        let report = liability_of(
            &lots,
            &rows,
            0,
            "HKD",
            Some(Decimal::new(5, 3)),
            DateTime::<Utc>::UNIX_EPOCH,
        );
        assert_eq!((report.total.points, report.total.owed), (112, 15));
        assert_eq!(report.total.amount, Some(Decimal::new(56, 2)));
        let keys = |l: &[Outstanding]| {
            l.iter()
                .map(|o| (o.key.clone(), o.points))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys(&report.by_expiry_month),
            [("2026-02", 70), ("2026-03", 35), ("never", 7)].map(|(k, p)| (k.to_string(), p))
        );
        assert_eq!(
            keys(&report.by_expiry_quarter),
            [("2026-Q1", 105), ("never", 7)].map(|(k, p)| (k.to_string(), p))
        );
        assert_eq!(
            keys(&report.by_campaign),
            [("", 77), ("X,Y", 35)].map(|(k, p)| (k.to_string(), p))
        );
        let csv = report.to_csv();
        assert!(
            csv.starts_with(
                "dimension,key,points,pending,owed,amount\r\ntotal,total,112,0,15,0.56\r\n"
            ),
            "{csv}"
        );
        assert!(csv.contains("campaign,\"X,Y\",35,0,15,0.175\r\n"), "{csv}");
    }

    #[test]
    fn group_by_names() {
        for by in [GroupBy::Day, GroupBy::Store, GroupBy::Campaign] {
            assert_eq!(GroupBy::parse(by.as_str()).unwrap(), by);
        }
        assert!(GroupBy::parse("week").is_err());
    }
}
