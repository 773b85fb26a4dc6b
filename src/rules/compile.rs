//! Validation of raw rule files into a compiled `Ruleset`. Every problem names the file, the
//! line and column, and what is wrong; all problems of a ruleset are reported at once.

use super::engine::{
    Award, Campaign, CampaignIndex, CampaignTest, EarnBase, Glob, MemberLimit, Objective,
    PerAmount, Program, Rounding, RoundingScope, Ruleset, SpendBase, TierPeriod, Tiers, TradeCount,
    WEEKDAYS,
};
use super::raw::{
    DecimalText, RawAward, RawCampaign, RawFile, RawKdp, RawObjective, RawProgram, RawTest,
    RawTiers,
};
use super::Source;
use crate::domain::expiry::KdpPolicy;
use crate::domain::trade::parse_rfc3339;
use crate::domain::{
    Amount, CampaignCode, CurrencyCode, ExpireType, InvoiceId, ObjectiveId, OutTradeNo,
    PaymentMethod, Points, ProgramTz, Sku, StoreCode, Trade, TradeLine, VipAccountNo,
};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Limits on what a ruleset may say.
pub const CAMPAIGNS_MAX: usize = 100_000;
pub const PATTERNS_PER_CAMPAIGN_MAX: usize = 10_000;
pub const TEXT_LEN_MAX: usize = 256;
pub const RATE_MAX: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);
pub const MULTIPLIER_MAX: Decimal = Decimal::from_parts(1_000, 0, 0, false, 0);
pub const QUARTERS_AHEAD_MAX: i64 = 40;
pub const PENDING_DAYS_MAX: i64 = 366;
pub const OBJECTIVES_MAX: usize = 10_000;
pub const TESTS_MAX: usize = 10_000;
pub const STORE_GROUPS_MAX: usize = 10_000;
/// The largest point figure a rule may name (a limit, a budget, an award).
pub const RULE_POINTS_MAX: i64 = 1_000_000_000_000;
pub const TIERS_MAX: usize = 20;

/// One thing wrong in a rule file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no rule files (*.toml) in the rules folder", dir.display())]
    NoFiles { dir: PathBuf },
    #[error("{}: {count} rule files, at most {} allowed", dir.display(), super::FILES_MAX)]
    TooManyFiles { dir: PathBuf, count: usize },
    #[error("{}: {bytes} bytes, at most {} allowed", path.display(), super::FILE_BYTES_MAX)]
    FileTooLarge { path: PathBuf, bytes: u64 },
    #[error("{}", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid { problems: Vec<Problem> },
}

/// A rule file with the byte offset of each of its line ends, found once: a place in it is
/// a binary search, so locating every campaign of a large file stays linear.
struct Located<'a> {
    source: &'a Source,
    newlines: Vec<usize>,
}

impl Located<'_> {
    /// (line, column) of a byte offset, both from 1; the column in characters.
    fn place(&self, offset: usize) -> (usize, usize) {
        let text = &self.source.text;
        let offset = offset.min(text.len());
        let line = self.newlines.partition_point(|&nl| nl < offset);
        let start = if line == 0 {
            0
        } else {
            self.newlines[line - 1] + 1
        };
        let column = text.get(start..offset).map_or(0, |t| t.chars().count()) + 1;
        (line + 1, column)
    }
}

/// Collects problems against one file, turning byte offsets into lines and columns.
struct FileProblems<'a> {
    file: &'a Located<'a>,
    problems: &'a mut Vec<Problem>,
}

impl FileProblems<'_> {
    /// `file:line` of a byte offset.
    fn origin(&self, offset: usize) -> String {
        format!("{}:{}", self.file.source.name, self.file.place(offset).0)
    }

    fn at(&mut self, offset: usize, message: impl Into<String>) {
        let (line, column) = self.file.place(offset);
        self.problems.push(Problem {
            file: self.file.source.name.clone(),
            line,
            column,
            message: message.into(),
        });
    }

    /// A problem of a table (`[program]`, a `[[campaign]]`…) starting at `table_offset`, at the
    /// key its message names (`campaign "X": nth_trade: …` → the `nth_trade =` line), or at the
    /// table's header when the key is not written in it.
    fn at_key(&mut self, table_offset: usize, message: String) {
        let offset = key_named_by(&message)
            .and_then(|key| key_offset(&self.file.source.text, table_offset, key))
            .unwrap_or(table_offset);
        self.at(offset, message);
    }
}

/// The key a problem's message is about: its first word after the `campaign "X": ` label, the
/// table's name dropped from a dotted path (`program.earn.exclude` → `earn`).
fn key_named_by(message: &str) -> Option<&str> {
    let mut rest = message;
    for label in ["campaign \"", "objective \"", "test \""] {
        if let Some(after) = rest.strip_prefix(label) {
            rest = &after[after.find("\": ")? + 3..];
        }
    }
    let word_end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(rest.len());
    let mut path = rest[..word_end].split('.').filter(|s| !s.is_empty());
    let first = path.next()?;
    match first {
        "program" | "campaign" | "objective" | "test" => path.next(),
        key => Some(key),
    }
}

/// The byte offset of `key = …` among the lines of the table whose header is at
/// `table_offset`, or of its sub-table `[….key]`, before the next table's header (its other
/// sub-tables, `[program.earn]`, are passed over).
fn key_offset(text: &str, table_offset: usize, key: &str) -> Option<usize> {
    let body_start = table_offset + text.get(table_offset..)?.find('\n')? + 1;
    let mut offset = body_start;
    for line in text.get(body_start..)?.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if let Some(header) = trimmed.strip_prefix('[') {
            let header = header.split('#').next().unwrap_or_default().trim_end();
            if header.starts_with('[') || !header.contains('.') {
                return None;
            }
            if header.strip_suffix(']')?.rsplit('.').next() == Some(key) {
                return Some(offset + line.len() - trimmed.len());
            }
            offset += line.len();
            continue;
        }
        let indent = line.len() - trimmed.len();
        let is_key = trimmed
            .strip_prefix(key)
            .is_some_and(|after| after.trim_start().starts_with('='));
        if is_key {
            return Some(offset + indent);
        }
        offset += line.len();
    }
    None
}

/// A file's line ends and its tables (or the parser's error).
type Parsed<'a> = (Located<'a>, Result<RawFile, toml::de::Error>);

/// A file with room for two parts of this many bytes is parsed in parts of about this size
/// (`cuts`): each part's parser buffers stay small and are reused (a 3 MB file parses about a
/// quarter faster in 256 KiB parts than in halves, on one core or two), and a large file's
/// parts spread over every core.
const PART_BYTES: usize = 256 * 1024;

/// The headers a part after the first may hold: arrays of tables, and tables inside them.
const PART_HEADERS: [&str; 9] = [
    "[[campaign]]",
    "[[campaign.",
    "[campaign.",
    "[[objective]]",
    "[[objective.",
    "[objective.",
    "[[test]]",
    "[[test.",
    "[test.",
];

/// Byte offsets at which `text` may be cut into at most `parts` parts of about equal size,
/// each of which parses alone to its share of what the whole file parses to: the starts of
/// lines that are exactly `[[campaign]]`, when everything from the first of them on is arrays
/// of tables and tables inside them (`PART_HEADERS`), so that each part only adds elements to
/// the file's arrays, in order. None when anything else there starts with `[` (a line of a
/// multi-line string or array is taken for a header: the file is parsed whole). A cut inside
/// a multi-line string leaves the part before it unterminated: that part fails to parse, and
/// the file is parsed whole (`parse_all`).
fn cuts(text: &str, parts: usize) -> Vec<usize> {
    let mut headers = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let trimmed = line.trim_start();
        if !trimmed.starts_with('[') {
            continue;
        }
        if line.trim_end() == PART_HEADERS[0] {
            headers.push(start);
        } else if !headers.is_empty() && !PART_HEADERS.iter().any(|h| trimmed.starts_with(h)) {
            return Vec::new();
        }
    }
    let mut cuts: Vec<usize> = Vec::with_capacity(parts);
    for k in 1..parts {
        let i = headers.partition_point(|&h| h < k * text.len() / parts);
        match headers.get(i) {
            Some(&cut) if cut > 0 && cuts.last().is_none_or(|&last| cut > last) => cuts.push(cut),
            _ => {}
        }
    }
    cuts
}

/// A part of a file to parse: `text[range]` of `sources[source]`.
struct Part {
    source: usize,
    range: std::ops::Range<usize>,
}

/// A part parsed: the offsets of its line ends in the file, and its tables, their spans in
/// the file.
type ParsedPart = (Vec<usize>, Result<RawFile, toml::de::Error>);

fn parse_part(sources: &[Source], part: &Part) -> ParsedPart {
    let at = part.range.start;
    let text = &sources[part.source].text[part.range.clone()];
    let newlines = text
        .bytes()
        .enumerate()
        .filter_map(|(i, b)| (b == b'\n').then_some(at + i))
        .collect();
    let parsed = toml::from_str::<RawFile>(text).map(|file| match at {
        0 => file,
        _ => RawFile {
            program: file.program.map(|p| shifted(p, at)),
            campaign: file.campaign.into_iter().map(|c| shifted(c, at)).collect(),
            objective: file.objective.into_iter().map(|o| shifted(o, at)).collect(),
            test: file.test.into_iter().map(|t| shifted(t, at)).collect(),
        },
    });
    (newlines, parsed)
}

/// `spanned` with its span `by` bytes further on.
fn shifted<T>(spanned: toml::Spanned<T>, by: usize) -> toml::Spanned<T> {
    let span = spanned.span();
    toml::Spanned::new(span.start + by..span.end + by, spanned.into_inner())
}

/// How many threads a large program is loaded on: as many as the machine has cores, at most 8.
fn load_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
}

/// `work` of each item, in the items' order, on `threads` threads, the items dealt out in
/// turn so that large and small ones spread over them. The threads run at a lower priority
/// (nice 10, Linux), so a hot reload takes the cores the trades leave idle and never holds
/// them up; at start nothing else runs.
fn on_threads<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    work: impl Fn(&T) -> R + Sync,
) -> impl Iterator<Item = R> {
    let threads = threads.clamp(1, items.len().max(1));
    let mut by_thread: Vec<std::vec::IntoIter<R>> = if threads == 1 {
        vec![items.iter().map(&work).collect::<Vec<R>>().into_iter()]
    } else {
        let work = &work;
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    scope.spawn(move || {
                        // Without it the work runs at the normal priority: still correct.
                        let _ = crate::priority::set_this_threads_nice(10);
                        let mine = items.iter().skip(t).step_by(threads);
                        mine.map(work).collect::<Vec<R>>().into_iter()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("loading rules does not panic"))
                .collect()
        })
    };
    (0..items.len()).map(move |i| {
        by_thread[i % threads]
            .next()
            .expect("a result for every item")
    })
}

/// Parses every file (and finds its lines), on every core (`on_threads`): the files are
/// independent, and parsing is most of the time a large program takes to load. A large file
/// is parsed in parts of about `PART_BYTES` (`cuts`), so that one large file loads on every
/// core too.
fn parse_all(sources: &[Source]) -> Vec<Parsed<'_>> {
    let threads = load_threads();
    let mut parts = Vec::with_capacity(sources.len());
    for (source, s) in sources.iter().enumerate() {
        let len = s.text.len();
        let cut = match len >= 2 * PART_BYTES {
            true => cuts(&s.text, len / PART_BYTES),
            false => Vec::new(),
        };
        let mut start = 0;
        for end in cut.into_iter().chain([len]) {
            parts.push(Part {
                source,
                range: start..end,
            });
            start = end;
        }
    }
    let parsed = on_threads(&parts, threads, |p| parse_part(sources, p));
    // Each file's parts, in order, joined.
    let mut parsed = parts.iter().zip(parsed).peekable();
    let mut files = Vec::with_capacity(sources.len());
    for (i, source) in sources.iter().enumerate() {
        let (mut newlines, mut file) = (Vec::new(), None);
        let mut whole = false;
        while let Some((_, (lines, part))) = parsed.next_if(|(p, _)| p.source == i) {
            newlines.extend(lines);
            file = match (file, part) {
                (None, part) => Some(part),
                (Some(Ok(mut file)), Ok(more)) if more.program.is_none() => {
                    file.campaign.extend(more.campaign);
                    file.objective.extend(more.objective);
                    file.test.extend(more.test);
                    Some(Ok(file))
                }
                (file, _) => {
                    whole = true;
                    file
                }
            };
        }
        let file = match file {
            // A part of it failed: the whole file's parse says where, as it would alone.
            Some(Ok(file)) if !whole => Ok(file),
            Some(Err(error)) if !whole => Err(error),
            _ => toml::from_str(&source.text),
        };
        files.push((Located { source, newlines }, file));
    }
    files
}

pub fn compile(sources: &[Source], version: String) -> Result<Ruleset, LoadError> {
    let mut problems = Vec::new();
    let mut program: Option<(Program, String)> = None;
    let mut raw_campaigns = Vec::new();
    let mut raw_objectives = Vec::new();
    let mut raw_tests = Vec::new();

    let (located, all): (Vec<Located>, Vec<_>) = parse_all(sources).into_iter().unzip();
    for (file, parsed) in located.iter().zip(all) {
        let source = file.source;
        let mut at = FileProblems {
            file,
            problems: &mut problems,
        };
        let parsed: RawFile = match parsed {
            Ok(parsed) => parsed,
            Err(error) => {
                let offset = error.span().map_or(0, |s| s.start);
                at.at(offset, error.message().to_string());
                continue;
            }
        };
        if let Some(raw) = parsed.program {
            let offset = raw.span().start;
            if let Some((_, first)) = &program {
                at.at(
                    offset,
                    format!("a second [program]: the first is in {first}"),
                );
            } else if let Some(compiled) =
                compile_program(raw.get_ref(), &mut |m| at.at_key(offset, m))
            {
                program = Some((compiled, source.name.clone()));
            }
        }
        // Kept per file: a raw campaign is a large value, and moving 100,000 of them into one
        // vector was a tenth of a large program's build.
        raw_campaigns.push((file, parsed.campaign));
        for raw in parsed.objective {
            raw_objectives.push((file, raw));
        }
        for raw in parsed.test {
            raw_tests.push((file, raw));
        }
    }

    let Some((program, _)) = program else {
        if problems.is_empty() {
            // Blamed on the program file if there is one (an emptied program.toml), not on
            // whichever file sorts first.
            let program_file = sources.iter().find(|s| {
                std::path::Path::new(&s.name)
                    .file_stem()
                    .is_some_and(|stem| stem == "program")
            });
            let (file, message) = match program_file {
                Some(s) if s.text.trim().is_empty() => (
                    s.name.clone(),
                    "the file is empty: it must hold the [program] table".to_string(),
                ),
                Some(s) => (
                    s.name.clone(),
                    "no [program] table here or in any rule file".to_string(),
                ),
                None => (
                    sources.first().map_or_else(String::new, |s| s.name.clone()),
                    "no [program] table in any rule file (put it in program.toml)".to_string(),
                ),
            };
            problems.push(Problem {
                file,
                line: 1,
                column: 1,
                message,
            });
        }
        return Err(LoadError::Invalid { problems });
    };
    for (what, count, max, file) in [
        (
            "campaigns",
            raw_campaigns.iter().map(|(_, c)| c.len()).sum(),
            CAMPAIGNS_MAX,
            raw_campaigns
                .iter()
                .rev()
                .find(|(_, c)| !c.is_empty())
                .map(|c| c.0.source),
        ),
        (
            "objectives",
            raw_objectives.len(),
            OBJECTIVES_MAX,
            raw_objectives.last().map(|c| c.0.source),
        ),
        (
            "tests",
            raw_tests.len(),
            TESTS_MAX,
            raw_tests.last().map(|c| c.0.source),
        ),
    ] {
        if count > max {
            problems.push(Problem {
                file: file.map_or_else(String::new, |f| f.name.clone()),
                line: 1,
                column: 1,
                message: format!("{count} {what}, at most {max} allowed"),
            });
            return Err(LoadError::Invalid { problems });
        }
    }

    let raw_campaigns_by_file = raw_campaigns;
    let raw_campaigns: Vec<(&Located, &toml::Spanned<RawCampaign>)> = raw_campaigns_by_file
        .iter()
        .flat_map(|(file, raws)| raws.iter().map(move |raw| (*file, raw)))
        .collect();
    let mut campaigns = Vec::with_capacity(raw_campaigns.len());
    // Each code and the file it is first written in.
    let mut seen: HashMap<String, &str> =
        HashMap::with_capacity(raw_campaigns.len() + raw_objectives.len());
    for &(file, raw) in &raw_campaigns {
        let source = file.source;
        let mut at = FileProblems {
            file,
            problems: &mut problems,
        };
        let offset = raw.span().start;
        let origin = at.origin(offset);
        let Some(campaign) = compile_campaign(raw.get_ref(), &program, origin, &mut |m| {
            at.at_key(offset, m)
        }) else {
            continue;
        };
        if let Some(first) = seen.insert(campaign.code.as_str().to_string(), &source.name) {
            at.at(
                offset,
                format!(
                    "campaign code {:?} is used twice: also in {first}",
                    campaign.code.as_str()
                ),
            );
            continue;
        }
        // A paused campaign is checked like any other, and left out of what prices trades.
        if raw.get_ref().enabled {
            campaigns.push(campaign);
        }
    }
    drop(raw_campaigns);
    drop_aside(
        raw_campaigns_by_file
            .into_iter()
            .map(|(_, raws)| raws)
            .collect(),
    );
    let mut objectives: Vec<Objective> = Vec::with_capacity(raw_objectives.len());
    for (file, raw) in &raw_objectives {
        let source = file.source;
        let mut at = FileProblems {
            file,
            problems: &mut problems,
        };
        let offset = raw.span().start;
        let Some(objective) = compile_objective(raw.get_ref(), &mut |m| at.at_key(offset, m))
        else {
            continue;
        };
        if let Some(first) = seen.insert(objective.code.as_str().to_string(), &source.name) {
            at.at(
                offset,
                format!(
                    "objective code {:?} is used twice: also in {first}",
                    objective.code.as_str()
                ),
            );
        } else if objectives.iter().any(|o| o.id == objective.id) {
            at.at(
                offset,
                format!("objective id {:?} is used twice", objective.id.as_str()),
            );
        } else {
            objectives.push(objective);
        }
    }
    let mut tests = Vec::with_capacity(raw_tests.len());
    for (index, (file, raw)) in raw_tests.iter().enumerate() {
        let mut at = FileProblems {
            file,
            problems: &mut problems,
        };
        let offset = raw.span().start;
        let origin = at.origin(offset);
        if let Some(test) = compile_test(raw.get_ref(), &program, index, origin, &mut |m| {
            at.at_key(offset, m)
        }) {
            tests.push(test);
        }
    }
    if !problems.is_empty() {
        return Err(LoadError::Invalid { problems });
    }
    let campaigns = by_priority(campaigns);
    let index = CampaignIndex::build(&campaigns);
    Ok(Ruleset {
        program,
        campaigns,
        objectives,
        tests,
        index,
        version,
    })
}

/// Frees the parsed campaigns on a thread of their own: freeing 100,000 of them (every string
/// of every campaign) took a sixth of a large program's build, and nothing waits for it.
fn drop_aside(raws: Vec<Vec<toml::Spanned<RawCampaign>>>) {
    if raws.iter().map(Vec::len).sum::<usize>() < 1_000 {
        return;
    }
    // If no thread can be started, they are freed here when the closure is dropped.
    let _ = std::thread::Builder::new()
        .name("rules-free".to_string())
        .spawn(move || drop(raws));
}

/// The campaigns in the order they are tried: highest priority first, then by code. The order
/// is worked out on small keys and applied in place, cycle by cycle: a campaign is a large
/// value, and sorting or copying 100,000 of them was a tenth of a large program's build.
fn by_priority(mut campaigns: Vec<Campaign>) -> Vec<Campaign> {
    let mut keys: Vec<(std::cmp::Reverse<i64>, &str, usize)> = campaigns
        .iter()
        .enumerate()
        .map(|(i, c)| (std::cmp::Reverse(c.priority), c.code.as_str(), i))
        .collect();
    keys.sort_unstable();
    // `order[k]`: the campaign that goes to place k; `DONE` once its place is filled.
    let mut order: Vec<usize> = keys.into_iter().map(|(_, _, i)| i).collect();
    const DONE: usize = usize::MAX;
    for start in 0..order.len() {
        let mut place = start;
        while order[place] != DONE {
            let from = order[place];
            order[place] = DONE;
            if from == start {
                break;
            }
            // Place `place` takes its campaign; the one it held moves on to `from`, whose place
            // is filled next, until the cycle comes back to `start`.
            campaigns.swap(place, from);
            place = from;
        }
    }
    campaigns
}

/// A point figure in `1..=RULE_POINTS_MAX`.
/// A limit (per trade, per member, a budget): 0 is a limit that grants nothing.
fn limit_points(value: i64) -> Result<i64, String> {
    if (0..=RULE_POINTS_MAX).contains(&value) {
        Ok(value)
    } else {
        Err(format!("must be from 0 to {RULE_POINTS_MAX}, got {value}"))
    }
}

fn rule_points(value: i64) -> Result<i64, String> {
    if (1..=RULE_POINTS_MAX).contains(&value) {
        Ok(value)
    } else {
        Err(format!("must be from 1 to {RULE_POINTS_MAX}, got {value}"))
    }
}

fn glob(pattern: &str, what: &str) -> Result<Glob, String> {
    let pattern = pattern.trim();
    if pattern.is_empty() {
        return Err(format!("{what}: a pattern must not be empty"));
    }
    if pattern.chars().count() > TEXT_LEN_MAX {
        return Err(format!(
            "{what}: a pattern is longer than {TEXT_LEN_MAX} characters"
        ));
    }
    Ok(Glob::new(pattern))
}

fn expiry(raw_expiry: &str, quarters_ahead: i64) -> Result<(ExpireType, u32), String> {
    let expire_type = ExpireType::parse(raw_expiry).map_err(|e| format!("expiry: {e}"))?;
    if !(0..=QUARTERS_AHEAD_MAX).contains(&quarters_ahead) {
        return Err(format!(
            "quarters_ahead: must be from 0 to {QUARTERS_AHEAD_MAX}, got {quarters_ahead}"
        ));
    }
    if expire_type == ExpireType::Kdp && quarters_ahead != 0 {
        return Err("quarters_ahead: applies only to expiry = \"QUARTER\"".into());
    }
    Ok((expire_type, quarters_ahead as u32))
}

fn compile_objective(raw: &RawObjective, report: &mut dyn FnMut(String)) -> Option<Objective> {
    let id = field("objective.id", ObjectiveId::parse(&raw.id), report)?;
    let label = format!("objective {:?}", id.as_str());
    let mut report = |m: String| report(format!("{label}: {m}"));
    let report = &mut report;
    let code = field("code", CampaignCode::parse(&raw.code), report);
    let name = field("name", bounded_text(&raw.name), report);
    let remark = field("remark", bounded_text(&raw.remark), report);
    let points = field(
        "points",
        rule_points(raw.points).and_then(Points::new),
        report,
    );
    let every = field(
        "every",
        match raw.every {
            None => Ok(1),
            Some(n) if (1..=1_000_000).contains(&n) => Ok(n as u64),
            Some(n) => Err(format!("must be from 1 to 1000000, got {n}")),
        },
        report,
    );
    let expiry = expiry(&raw.expiry, raw.quarters_ahead)
        .map_err(&mut *report)
        .ok();
    let (expire_type, quarters_ahead) = expiry?;
    Some(Objective {
        id,
        code: code?,
        name: name?,
        remark: remark?.into(),
        points: points?,
        every: every?,
        expire_type,
        quarters_ahead,
    })
}

fn compile_test(
    raw: &RawTest,
    program: &Program,
    index: usize,
    origin: String,
    report: &mut dyn FnMut(String),
) -> Option<CampaignTest> {
    let label = format!("test {:?}", raw.name);
    let mut report = |m: String| report(format!("{label}: {m}"));
    let report = &mut report;
    let t = &raw.trade;
    let amount = |name: &str, text: &DecimalText, report: &mut dyn FnMut(String)| {
        field(name, Amount::parse(&text.0), report)
    };
    let payment_amount = amount("trade.payment_amount", &t.payment_amount, report);
    let total_amount = match &t.total_amount {
        Some(text) => amount("trade.total_amount", text, report),
        None => payment_amount,
    };
    let optional =
        |name: &str, text: &Option<DecimalText>, report: &mut dyn FnMut(String)| match text {
            Some(text) => amount(name, text, report),
            None => Some(Amount::ZERO),
        };
    let post_fee = optional("trade.post_fee", &t.post_fee, report);
    let discount = optional("trade.discount", &t.discount, report);
    let sales_time = field("trade.sales_time", parse_rfc3339(&t.sales_time), report);
    let store_code = field("trade.store_code", StoreCode::parse(&t.store_code), report);
    let payment_method = field(
        "trade.payment_method",
        PaymentMethod::parse(&t.payment_method),
        report,
    );
    let currency = field(
        "trade.currency",
        CurrencyCode::parse(t.currency.as_deref().unwrap_or("HKD")),
        report,
    );
    let burn_point = field("trade.burn_point", Points::new(t.burn_point), report);
    let resource = field(
        "trade.resource",
        if t.resource.chars().count() > Trade::RESOURCE_LEN_MAX {
            Err(format!(
                "must be at most {} characters",
                Trade::RESOURCE_LEN_MAX
            ))
        } else {
            Ok(t.resource.clone())
        },
        report,
    );
    let mut lines = Vec::new();
    for line in &t.lines {
        let sku = field("trade.lines.sku", Sku::parse(&line.sku), report);
        let amount = amount("trade.lines.amount", &line.amount, report);
        if let (Some(sku), Some(amount)) = (sku, amount) {
            if let Some(line) = field(
                "trade.lines",
                TradeLine::new(sku, "", line.quantity, amount),
                report,
            ) {
                lines.push(line);
            }
        }
    }
    let count = |name: &str, value: i64, report: &mut dyn FnMut(String)| {
        field(
            name,
            u64::try_from(value).map_err(|_| "must not be negative".to_string()),
            report,
        )
    };
    let trades_before = count("trades_before", raw.trades_before, report);
    let birthday = match &raw.birthday {
        None => Some(None),
        Some(text) => field(
            "birthday",
            crate::domain::Birthday::parse(text).map(Some),
            report,
        ),
    };
    let tier = match (&raw.tier, &program.tiers) {
        (None, _) => Some(None),
        (Some(name), Some(tiers)) if tiers.position(name.trim()).is_some() => {
            Some(Some(name.trim().to_string()))
        }
        (Some(name), _) => {
            report(format!("tier: {name:?} is not a level of program.tiers"));
            None
        }
    };
    let gender = match &raw.gender {
        None => Some(None),
        Some(text) => field(
            "gender",
            crate::domain::Gender::parse(text).map(Some),
            report,
        ),
    };
    let mut campaigns = std::collections::HashMap::new();
    for (code, history) in &raw.history {
        let Some(code) = field("history", CampaignCode::parse(code), report) else {
            continue;
        };
        let trades_in_window = count("history.trades_in_window", history.trades_in_window, report);
        campaigns.insert(
            code,
            crate::domain::CampaignUse {
                trades_in_window: trades_in_window.unwrap_or(0),
                points_total: history.points_total,
                points_day: history.points_day,
                points_week: history.points_week,
                points_month: history.points_month,
                budget_used: history.budget_used,
                budget_day_used: history.budget_day_used,
                budget_month_used: history.budget_month_used,
            },
        );
    }
    let sales_time = sales_time?;
    let trade = Trade {
        vip_accountno: VipAccountNo::parse("RULES-TEST").expect("a valid id"),
        out_trade_no: OutTradeNo::parse(&format!("RULES-TEST-{index}")).expect("a valid id"),
        store_code: store_code?,
        invoice_id: InvoiceId::parse("RULES-TEST").expect("a valid id"),
        total_amount: total_amount?,
        payment_amount: payment_amount?,
        payment_method: payment_method?,
        currency: currency?,
        sales_time,
        submit_time: sales_time,
        approval_time: sales_time,
        burn_point: burn_point?,
        resource: resource?,
        remark: String::new(),
        receipt_image_urls: Vec::new(),
        payment_image_urls: Vec::new(),
        lines,
        post_fee: post_fee?,
        discount: discount?,
    };
    Some(CampaignTest {
        origin,
        name: bounded_text(&raw.name).unwrap_or_else(|_| raw.name.chars().take(64).collect()),
        trade,
        context: crate::domain::MemberContext {
            trades_before: trades_before?,
            gender: gender?,
            qualifying: None,
            tier: tier?,
            birthday: birthday?,
            campaigns,
            repricing: false,
            only_campaigns: None,
        },
        total: raw.total,
        grants: raw.grants.as_ref().map(|grants| {
            grants
                .iter()
                .map(|g| (g.campaign.clone(), g.points))
                .collect()
        }),
    })
}

fn parse_decimal(raw: &DecimalText) -> Result<Decimal, String> {
    Decimal::from_str(raw.0.trim()).map_err(|_| format!("{:?} is not a decimal number", raw.0))
}

/// A decimal in `(0, max]`.
fn positive_decimal(raw: &DecimalText, max: Decimal) -> Result<Decimal, String> {
    let value = parse_decimal(raw)?;
    if value <= Decimal::ZERO || value > max {
        return Err(format!("must be above 0 and at most {max}, got {value}"));
    }
    Ok(value)
}

fn bounded_text(value: &str) -> Result<String, String> {
    if value.chars().count() > TEXT_LEN_MAX {
        return Err(format!("must be at most {TEXT_LEN_MAX} characters"));
    }
    Ok(value.to_string())
}

/// Runs a field parser and reports its error prefixed with the field's name.
fn field<T>(name: &str, result: Result<T, String>, report: &mut dyn FnMut(String)) -> Option<T> {
    result.map_err(|e| report(format!("{name}: {e}"))).ok()
}

fn compile_program(raw: &RawProgram, report: &mut dyn FnMut(String)) -> Option<Program> {
    let name = field("program.name", bounded_text(&raw.name), report);
    let time_zone = field(
        "program.time_zone",
        ProgramTz::parse(&raw.time_zone),
        report,
    );
    let base_currency = field(
        "program.base_currency",
        CurrencyCode::parse(&raw.base_currency),
        report,
    );
    let rounding = field("program.rounding", Rounding::parse(&raw.rounding), report);
    let earn_base = field("program.earn.base", EarnBase::parse(&raw.earn.base), report);
    let earn_points = field(
        "program.earn.points",
        Points::new(raw.earn.points).and_then(|p| {
            if p.is_zero() {
                Err("must be above 0".into())
            } else {
                Ok(Decimal::from(p.value()))
            }
        }),
        report,
    );
    let earn_per_amount = field(
        "program.earn.per_amount",
        positive_decimal(&raw.earn.per_amount, Decimal::MAX),
        report,
    );
    let earn_remark = field(
        "program.earn.remark",
        bounded_text(&raw.earn.remark),
        report,
    );
    let kdp = field("program.kdp", compile_kdp(&raw.kdp), report);
    let pending_days = field(
        "program.pending_days",
        if (0..=PENDING_DAYS_MAX).contains(&raw.pending_days) {
            Ok(raw.pending_days as u32)
        } else {
            Err(format!(
                "must be from 0 to {PENDING_DAYS_MAX}, got {}",
                raw.pending_days
            ))
        },
        report,
    );
    let mut exclude = (false, false, false);
    for item in &raw.earn.exclude {
        match item.as_str() {
            "post_fee" => exclude.0 = true,
            "discount" => exclude.1 = true,
            "burned_points" => exclude.2 = true,
            other => report(format!(
                "program.earn.exclude: {other:?} is not one of \"post_fee\", \"discount\", \"burned_points\""
            )),
        }
    }
    let burned_value = match &raw.earn.burned_point_value {
        Some(text) => field(
            "program.earn.burned_point_value",
            positive_decimal(text, RATE_MAX),
            report,
        ),
        None => None,
    };
    if exclude.2 && burned_value.is_none() {
        report("program.earn.exclude: \"burned_points\" needs burned_point_value".into());
    }
    let excluded_skus = raw
        .earn
        .excluded_skus
        .iter()
        .map(|p| glob(p, "program.earn.excluded_skus"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(&mut *report)
        .ok();
    let rounding_scope = match raw.earn.rounding_scope.as_deref() {
        None | Some("receipt") => Some(RoundingScope::Receipt),
        Some("line") => Some(RoundingScope::Line),
        Some(other) => {
            report(format!(
                "program.earn.rounding_scope: must be \"receipt\" or \"line\", got {other:?}"
            ));
            None
        }
    };
    if raw.store_groups.len() > STORE_GROUPS_MAX {
        report(format!(
            "program.store_groups: {} groups, at most {STORE_GROUPS_MAX} allowed",
            raw.store_groups.len()
        ));
    }
    let mut store_groups: BTreeMap<String, Vec<Glob>> = BTreeMap::new();
    for (name, patterns) in &raw.store_groups {
        let entry = format!("program.store_groups.{name}");
        if patterns.is_empty() || patterns.len() > PATTERNS_PER_CAMPAIGN_MAX {
            report(format!(
                "{entry}: from 1 to {PATTERNS_PER_CAMPAIGN_MAX} patterns, got {}",
                patterns.len()
            ));
            continue;
        }
        if let Some(globs) = field(
            &entry,
            patterns.iter().map(|p| glob(p, "a pattern")).collect(),
            report,
        ) {
            store_groups.insert(name.clone(), globs);
        }
    }
    if raw.holidays.len() > STORE_GROUPS_MAX {
        report(format!(
            "program.holidays: {} lists, at most {STORE_GROUPS_MAX} allowed",
            raw.holidays.len()
        ));
    }
    let mut holidays = BTreeMap::new();
    for (name, dates) in &raw.holidays {
        let entry = format!("program.holidays.{name}");
        if dates.is_empty() || dates.len() > PATTERNS_PER_CAMPAIGN_MAX {
            report(format!(
                "{entry}: from 1 to {PATTERNS_PER_CAMPAIGN_MAX} dates, got {}",
                dates.len()
            ));
            continue;
        }
        if let Some(dates) = field(
            &entry,
            dates.iter().map(|d| local_date(d)).collect(),
            report,
        ) {
            holidays.insert(name.clone(), dates);
        }
    }
    let mut currency_rates = BTreeMap::new();
    for (code, rate) in &raw.currencies {
        let entry = format!("program.currencies.{code}");
        let code = field(&entry, CurrencyCode::parse(code), report);
        let rate = field(&entry, positive_decimal(rate, RATE_MAX), report);
        if let (Some(code), Some(rate)) = (code, rate) {
            currency_rates.insert(code, rate);
        }
    }
    if let Some(base) = &base_currency {
        match currency_rates.get(base) {
            None => report(format!(
                "program.currencies: the base currency {base} needs a rate of \"1\""
            )),
            Some(rate) if *rate != Decimal::ONE => report(format!(
                "program.currencies.{base}: the base currency's rate must be \"1\", got {rate}"
            )),
            Some(_) => {}
        }
    }
    let mut store_zones = Vec::new();
    for (group, zone) in &raw.store_time_zones {
        let entry = format!("program.store_time_zones.{group}");
        let zone = field(&entry, ProgramTz::parse(zone), report);
        match (
            raw.store_groups.contains_key(group),
            store_groups.get(group),
            zone,
        ) {
            (false, _, _) => report(format!("{entry}: {group:?} is not in program.store_groups")),
            (true, Some(patterns), Some(zone)) => store_zones.push((patterns.clone(), zone)),
            _ => {}
        }
    }
    let tiers = match &raw.tiers {
        None => Some(None),
        Some(tiers) => field("program.tiers", compile_tiers(tiers), report).map(Some),
    };
    let (earn_points, earn_per_amount) = (earn_points?, earn_per_amount?);
    Some(Program {
        name: name?,
        time_zone: time_zone?,
        base_currency: base_currency?,
        currency_rates,
        rounding: rounding?,
        earn_base: earn_base?,
        earn_points,
        earn_per_amount,
        earn_ratio: super::engine::exact_ratio(earn_points, earn_per_amount),
        earn_remark: earn_remark?.into(),
        kdp: kdp?,
        pending_days: pending_days?,
        exclude_post_fee: exclude.0,
        exclude_discount: exclude.1,
        exclude_burned_at: if exclude.2 { burned_value } else { None },
        excluded_skus: excluded_skus?,
        rounding_scope: rounding_scope?,
        store_groups,
        holidays,
        tiers: tiers?,
        store_zones,
    })
}

fn compile_tiers(raw: &RawTiers) -> Result<Tiers, String> {
    let basis = match raw.qualify_on.as_str() {
        "points" => crate::domain::TierBasis::Points,
        "spend" => crate::domain::TierBasis::Spend,
        other => {
            return Err(format!(
                "qualify_on must be \"points\" or \"spend\", got {other:?}"
            ))
        }
    };
    let period = match raw.period.as_str() {
        "calendar_year" => TierPeriod::CalendarYear,
        "rolling_12_months" => TierPeriod::Rolling12Months,
        other => {
            return Err(format!(
                "period must be \"calendar_year\" or \"rolling_12_months\", got {other:?}"
            ))
        }
    };
    if raw.levels.is_empty() || raw.levels.len() > TIERS_MAX {
        return Err(format!(
            "levels: from 1 to {TIERS_MAX} tiers, got {}",
            raw.levels.len()
        ));
    }
    let mut levels: Vec<(String, Decimal)> = Vec::with_capacity(raw.levels.len());
    for level in &raw.levels {
        let name = level.name.trim();
        if name.is_empty() || name.chars().count() > crate::domain::CampaignCode::LEN_MAX {
            return Err(format!(
                "levels: a name is from 1 to {} characters",
                crate::domain::CampaignCode::LEN_MAX
            ));
        }
        if levels.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            return Err(format!("levels: {name:?} is named twice"));
        }
        let from = parse_decimal(&level.from).map_err(|e| format!("levels: {name}: from {e}"))?;
        match levels.last() {
            None if !from.is_zero() => {
                return Err(format!(
                    "levels: the first, {name}, is every member's: its from must be 0, got {from}"
                ))
            }
            Some((below, below_from)) if from <= *below_from => {
                return Err(format!(
                    "levels: {name} from {from} is not above {below} from {below_from}"
                ))
            }
            _ if from > Decimal::from(RULE_POINTS_MAX) => {
                return Err(format!(
                    "levels: {name}: from must be at most {RULE_POINTS_MAX}"
                ))
            }
            _ => {}
        }
        levels.push((name.to_string(), from));
    }
    Ok(Tiers {
        basis,
        period,
        levels,
    })
}

fn compile_kdp(raw: &RawKdp) -> Result<KdpPolicy, String> {
    let months = |max: u32| match raw.months {
        Some(m) if (0..=i64::from(max)).contains(&m) => Ok(m as u32),
        Some(m) => Err(format!("months must be from 0 to {max}, got {m}")),
        None => Err(format!("policy {:?} needs months", raw.policy)),
    };
    let policy = match raw.policy.as_str() {
        "rolling_months" => KdpPolicy::RollingMonths(months(KdpPolicy::MONTHS_MAX)?),
        "end_of_nth_month" => KdpPolicy::EndOfNthMonth(months(KdpPolicy::MONTHS_MAX)?),
        "end_of_nth_year" => match raw.years {
            Some(y) if (0..=i64::from(KdpPolicy::YEARS_MAX)).contains(&y) => KdpPolicy::EndOfNthYear(y as u32),
            Some(y) => return Err(format!("years must be from 0 to {}, got {y}", KdpPolicy::YEARS_MAX)),
            None => return Err("policy \"end_of_nth_year\" needs years".into()),
        },
        "never" => KdpPolicy::Never,
        other => {
            return Err(format!(
                "policy must be \"rolling_months\", \"end_of_nth_month\", \"end_of_nth_year\" or \"never\", got {other:?}"
            ))
        }
    };
    let uses_months = matches!(
        policy,
        KdpPolicy::RollingMonths(_) | KdpPolicy::EndOfNthMonth(_)
    );
    let uses_years = matches!(policy, KdpPolicy::EndOfNthYear(_));
    if raw.months.is_some() && !uses_months {
        return Err(format!("policy {:?} takes no months", raw.policy));
    }
    if raw.years.is_some() && !uses_years {
        return Err(format!("policy {:?} takes no years", raw.policy));
    }
    Ok(policy)
}

fn compile_award(raw: &RawAward, program: &Program, has_skus: bool) -> Result<Award, String> {
    let forms = [
        raw.multiplier_of_e.is_some(),
        raw.multiplier_of_e_by_tier.is_some(),
        raw.points.is_some() || raw.per_amount.is_some(),
        raw.fixed.is_some(),
        raw.points_per_line.is_some(),
        raw.points_per_unit.is_some(),
    ];
    if forms.iter().filter(|f| **f).count() != 1 {
        return Err(
            "give exactly one of multiplier_of_e, multiplier_of_e_by_tier, points with \
                    per_amount, fixed, points_per_line or points_per_unit"
                .into(),
        );
    }
    for (value, per_line) in [(raw.points_per_line, true), (raw.points_per_unit, false)] {
        if let Some(value) = value {
            if !has_skus {
                return Err("points_per_line and points_per_unit need the campaign's skus".into());
            }
            let points = rule_points(value).and_then(Points::new)?;
            return Ok(if per_line {
                Award::PerLine(points)
            } else {
                Award::PerUnit(points)
            });
        }
    }
    if raw.rounding.is_some() && raw.per_amount.is_none() {
        return Err("rounding applies only to points with per_amount".into());
    }
    if let Some(factor) = &raw.multiplier_of_e {
        return positive_decimal(factor, MULTIPLIER_MAX).map(Award::MultiplierOfE);
    }
    if let Some(by_tier) = &raw.multiplier_of_e_by_tier {
        let Some(tiers) = &program.tiers else {
            return Err("multiplier_of_e_by_tier: the program has no tiers (program.tiers)".into());
        };
        if by_tier.is_empty() {
            return Err("multiplier_of_e_by_tier: give a multiplier for at least one tier".into());
        }
        let mut factors = vec![None; tiers.levels.len()];
        for (name, factor) in by_tier {
            let level = tiers.position(name).ok_or_else(|| {
                format!("multiplier_of_e_by_tier: {name:?} is not a level of program.tiers")
            })?;
            factors[level] = Some(
                positive_decimal(factor, MULTIPLIER_MAX)
                    .map_err(|e| format!("multiplier_of_e_by_tier: {name}: {e}"))?,
            );
        }
        return Ok(Award::MultiplierOfEByTier(factors));
    }
    if let Some(fixed) = raw.fixed {
        return match Points::new(fixed) {
            Ok(points) if !points.is_zero() => Ok(Award::Fixed(points)),
            Ok(_) => Err("fixed must be above 0".into()),
            Err(e) => Err(format!("fixed {e}")),
        };
    }
    let (Some(points), Some(per_amount)) = (raw.points, &raw.per_amount) else {
        return Err("points and per_amount go together".into());
    };
    let points = Points::new(points).map_err(|e| format!("points {e}"))?;
    if points.is_zero() {
        return Err("points must be above 0".into());
    }
    let rounding = match &raw.rounding {
        Some(r) => Rounding::parse(r).map_err(|e| format!("rounding {e}"))?,
        None => program.rounding,
    };
    let points = Decimal::from(points.value());
    let per_amount =
        positive_decimal(per_amount, Decimal::MAX).map_err(|e| format!("per_amount {e}"))?;
    Ok(Award::PerAmount(PerAmount {
        points,
        per_amount,
        rounding,
        ratio: super::engine::exact_ratio(points, per_amount),
    }))
}

fn compile_campaign(
    raw: &RawCampaign,
    program: &Program,
    origin: String,
    report: &mut dyn FnMut(String),
) -> Option<Campaign> {
    let code = field("campaign.code", CampaignCode::parse(&raw.code), report)?;
    let label = format!("campaign {:?}", code.as_str());
    let mut report = |m: String| report(format!("{label}: {m}"));
    let report = &mut report;
    let name = field("name", bounded_text(&raw.name), report);
    let remark = field("remark", bounded_text(&raw.remark), report);
    let starts_at = field("starts_at", parse_rfc3339(&raw.starts_at), report);
    let ends_at = field("ends_at", parse_rfc3339(&raw.ends_at), report);
    if let (Some(start), Some(end)) = (starts_at, ends_at) {
        if end <= start {
            report(format!("ends_at {end} is not after starts_at {start}"));
        }
    }
    for (name, count) in [
        ("stores", raw.stores.len()),
        ("payment_methods", raw.payment_methods.len()),
        ("currencies", raw.currencies.len()),
        ("store_groups", raw.store_groups.len()),
        ("excluded_stores", raw.excluded_stores.len()),
        ("excluded_store_groups", raw.excluded_store_groups.len()),
        ("channels", raw.channels.len()),
        ("genders", raw.genders.len()),
        ("tiers", raw.tiers.len()),
        ("skus", raw.skus.len()),
        ("excluded_skus", raw.excluded_skus.len()),
        ("basket", raw.basket.len()),
        ("hours", raw.hours.len()),
        ("blackout_dates", raw.blackout_dates.len()),
    ] {
        if count > PATTERNS_PER_CAMPAIGN_MAX {
            report(format!(
                "{name}: {count} entries, at most {PATTERNS_PER_CAMPAIGN_MAX} allowed"
            ));
        }
    }
    let stores = raw
        .stores
        .iter()
        .map(|s| glob(s, "stores"))
        .collect::<Result<Vec<_>, _>>();
    let mut stores = stores.map_err(&mut *report).ok();
    for group in &raw.store_groups {
        match (program.store_groups.get(group), stores.as_mut()) {
            (Some(patterns), Some(stores)) => stores.extend(patterns.iter().cloned()),
            (None, _) => report(format!(
                "store_groups: {group:?} is not in program.store_groups"
            )),
            _ => {}
        }
    }
    let excluded_stores = raw
        .excluded_stores
        .iter()
        .map(|s| glob(s, "excluded_stores"))
        .collect::<Result<Vec<_>, _>>();
    let mut excluded_stores = excluded_stores.map_err(&mut *report).ok();
    for group in &raw.excluded_store_groups {
        match (program.store_groups.get(group), excluded_stores.as_mut()) {
            (Some(patterns), Some(excluded)) => excluded.extend(patterns.iter().cloned()),
            (None, _) => report(format!(
                "excluded_store_groups: {group:?} is not in program.store_groups"
            )),
            _ => {}
        }
    }
    let mut channels = Vec::new();
    for channel in &raw.channels {
        let channel = channel.trim();
        if channel.is_empty() || channel.chars().count() > crate::domain::Trade::RESOURCE_LEN_MAX {
            report(format!(
                "channels: a channel is from 1 to {} characters",
                crate::domain::Trade::RESOURCE_LEN_MAX
            ));
        } else {
            channels.push(channel.to_uppercase());
        }
    }
    let patterns = |name: &str, list: &[String], report: &mut dyn FnMut(String)| {
        list.iter()
            .map(|s| glob(s, name))
            .collect::<Result<Vec<_>, _>>()
            .map_err(report)
            .ok()
    };
    let skus = patterns("skus", &raw.skus, report);
    let excluded_skus = patterns("excluded_skus", &raw.excluded_skus, report);
    let basket = patterns("basket", &raw.basket, report);
    let spend_base = match raw.spend_base.as_deref() {
        None | Some("receipt") => Some(SpendBase::Receipt),
        Some("matching_lines") if raw.skus.is_empty() => {
            report("spend_base: \"matching_lines\" needs the campaign's skus".into());
            None
        }
        Some("matching_lines") => Some(SpendBase::MatchingLines),
        Some(other) => {
            report(format!(
                "spend_base: must be \"receipt\" or \"matching_lines\", got {other:?}"
            ));
            None
        }
    };
    let mut days_of_week = 0u8;
    for day in &raw.days_of_week {
        match WEEKDAYS
            .iter()
            .position(|d| d.eq_ignore_ascii_case(day.trim()))
        {
            Some(n) => days_of_week |= 1 << n,
            None => report(format!(
                "days_of_week: {day:?} is not one of {}",
                WEEKDAYS.join(", ")
            )),
        }
    }
    let hours = raw
        .hours
        .iter()
        .map(|h| parse_hours(h).map_err(|e| format!("hours: {e}")))
        .collect::<Result<Vec<_>, _>>()
        .map_err(&mut *report)
        .ok();
    // Dates, or names of the program's holiday lists.
    let mut blackout_dates = Vec::new();
    for entry in &raw.blackout_dates {
        match (program.holidays.get(entry.trim()), local_date(entry)) {
            (Some(dates), _) => blackout_dates.extend(dates.iter().copied()),
            (None, Ok(date)) => blackout_dates.push(date),
            (None, Err(_)) => report(format!(
                "blackout_dates: {entry:?} is neither a date (YYYY-MM-DD) nor in program.holidays"
            )),
        }
    }
    blackout_dates.sort_unstable();
    blackout_dates.dedup();
    let min_quantity = match raw.min_quantity {
        None => Some(1),
        Some(_) if raw.skus.is_empty() => {
            report("min_quantity: applies only with skus".into());
            None
        }
        Some(n) if (1..=i64::from(TradeLine::QUANTITY_MAX)).contains(&n) => Some(n as u32),
        Some(n) => {
            report(format!("min_quantity: must be at least 1, got {n}"));
            None
        }
    };
    let mut genders = Vec::new();
    for raw_gender in &raw.genders {
        match raw_gender.trim().to_ascii_lowercase().as_str() {
            "male" => genders.push(crate::domain::Gender::Male),
            "female" => genders.push(crate::domain::Gender::Female),
            "unknown" => genders.push(crate::domain::Gender::Unknown),
            other => report(format!(
                "genders: must be \"male\", \"female\" or \"unknown\", got {other:?}"
            )),
        }
    }
    let mut tiers = Vec::new();
    for name in &raw.tiers {
        match program.tiers.as_ref().map(|t| t.position(name.trim())) {
            Some(Some(level)) => tiers.push(level),
            Some(None) => report(format!("tiers: {name:?} is not a level of program.tiers")),
            None => report("tiers: the program has no tiers (program.tiers)".into()),
        }
    }
    tiers.sort_unstable();
    tiers.dedup();
    let counts = [
        (
            "nth_trade",
            raw.nth_trade,
            TradeCount::Nth as fn(u64) -> TradeCount,
        ),
        ("every_nth_trade", raw.every_nth_trade, TradeCount::EveryNth),
        ("from_nth_trade", raw.from_nth_trade, TradeCount::FromNth),
    ];
    let given: Vec<_> = counts.iter().filter(|(_, n, _)| n.is_some()).collect();
    let trade_count = match given.as_slice() {
        [] => Some(None),
        [(_, Some(n), count)] if (1..=1_000_000).contains(n) => Some(Some(count(*n as u64))),
        [(name, Some(n), _)] => {
            report(format!("{name}: must be from 1 to 1000000, got {n}"));
            None
        }
        [(name, ..), ..] => {
            report(format!(
                "{name}: give one of nth_trade, every_nth_trade and from_nth_trade"
            ));
            None
        }
    };
    let group = match &raw.group {
        Some(g) if g.trim().is_empty() => {
            report("group: must not be empty".into());
            None
        }
        Some(g) => field("group", bounded_text(g.trim()), report).map(Some),
        None => Some(None),
    };
    let points_field = |name: &str, value: Option<i64>, report: &mut dyn FnMut(String)| match value
    {
        None => Some(None),
        Some(v) => field(name, limit_points(v), report).map(Some),
    };
    let max_points_per_trade =
        points_field("max_points_per_trade", raw.max_points_per_trade, report);
    let budget = points_field("budget", raw.budget, report);
    let budget_per_day = points_field("budget_per_day", raw.budget_per_day, report);
    let budget_per_month = points_field("budget_per_month", raw.budget_per_month, report);
    let member_limit = match &raw.member_limit {
        None => Some(None),
        Some(limit) => {
            let total = points_field("member_limit.total", limit.total, report);
            let per_day = points_field("member_limit.per_day", limit.per_day, report);
            let per_week = points_field("member_limit.per_week", limit.per_week, report);
            let per_month = points_field("member_limit.per_month", limit.per_month, report);
            if limit.total.is_none()
                && limit.per_day.is_none()
                && limit.per_week.is_none()
                && limit.per_month.is_none()
            {
                report("member_limit: give total, per_day, per_week or per_month".into());
            }
            match (total, per_day, per_week, per_month) {
                (Some(total), Some(per_day), Some(per_week), Some(per_month)) => {
                    Some(Some(MemberLimit {
                        total,
                        per_day,
                        per_week,
                        per_month,
                    }))
                }
                _ => None,
            }
        }
    };
    let mut currencies = Vec::new();
    for raw_code in &raw.currencies {
        match CurrencyCode::parse(raw_code) {
            Ok(c) if program.currency_rates.contains_key(&c) => currencies.push(c),
            Ok(c) => report(format!("currencies: {c} has no rate in program.currencies")),
            Err(e) => report(format!("currencies: {e}")),
        }
    }
    let payment_methods = raw
        .payment_methods
        .iter()
        .map(|m| m.trim().to_ascii_uppercase())
        .collect();
    let spend = |name: &str, text: &DecimalText, report: &mut dyn FnMut(String)| {
        field(
            name,
            parse_decimal(text).and_then(|d| {
                if d < Decimal::ZERO {
                    Err(format!("must not be negative, got {d}"))
                } else {
                    Ok(d)
                }
            }),
            report,
        )
    };
    let min_spend = match &raw.min_spend {
        None => Some(Decimal::ZERO),
        Some(text) => spend("min_spend", text, report),
    };
    let max_spend = match &raw.max_spend {
        None => Some(None),
        Some(text) => spend("max_spend", text, report).map(Some),
    };
    if let (Some(min), Some(Some(max))) = (min_spend, max_spend) {
        if max < min {
            report(format!("max_spend {max} is below min_spend {min}"));
        }
    }
    let expiry = expiry(&raw.expiry, raw.quarters_ahead)
        .map_err(&mut *report)
        .ok();
    let award = field(
        "award",
        compile_award(&raw.award, program, !raw.skus.is_empty()),
        report,
    );
    let (expire_type, quarters_ahead) = expiry?;
    Some(Campaign {
        origin,
        code,
        name: name?,
        remark: remark?.into(),
        starts_at: starts_at?.to_utc(),
        ends_at: ends_at?.to_utc(),
        stores: stores?,
        excluded_stores: excluded_stores?,
        channels,
        payment_methods,
        currencies,
        days_of_week,
        hours: hours?,
        blackout_dates,
        min_spend: min_spend?,
        max_spend: max_spend?,
        skus: skus?,
        min_quantity: min_quantity?,
        excluded_skus: excluded_skus?,
        basket: basket?,
        spend_base: spend_base?,
        first_trade: raw.first_trade,
        trade_count: trade_count?,
        genders,
        tiers,
        birthday_month: raw.birthday_month,
        priority: raw.priority,
        exclusive: raw.exclusive,
        group: group?,
        expire_type,
        quarters_ahead,
        award: award?,
        max_points_per_trade: max_points_per_trade?,
        member_limit: member_limit?,
        budget: budget?,
        budget_per_day: budget_per_day?,
        budget_per_month: budget_per_month?,
    })
}

/// A local date, `YYYY-MM-DD`.
fn local_date(raw: &str) -> Result<chrono::NaiveDate, String> {
    chrono::NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d")
        .map_err(|_| format!("{raw:?} is not a date such as \"2026-12-25\""))
}

/// `"HH:MM-HH:MM"`, start included and end excluded, as minutes of the day; `24:00` ends a day.
/// A window that ends before it starts (`"22:00-02:00"`) runs past midnight.
fn parse_hours(raw: &str) -> Result<(u32, u32), String> {
    let minute = |text: &str| -> Option<u32> {
        let (h, m) = text.trim().split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
    };
    let bad = || format!("{raw:?} is not a window such as \"10:00-14:00\"");
    let (from, to) = raw.split_once('-').ok_or_else(bad)?;
    let (from, to) = (minute(from).ok_or_else(bad)?, minute(to).ok_or_else(bad)?);
    if to == from {
        return Err(format!(
            "{raw:?} starts and ends at the same time (leave hours out for all day)"
        ));
    }
    Ok((from, to))
}

#[cfg(test)]
mod key_tests {
    use super::{key_named_by, key_offset};

    #[test]
    fn a_problem_names_its_key() {
        for (message, key) in [
            (
                "campaign \"ONE\": nth_trade: must be from 1",
                Some("nth_trade"),
            ),
            (
                "campaign \"A: B\": ends_at 2022 is not after",
                Some("ends_at"),
            ),
            ("program.earn.exclude: \"tips\" is not one of", Some("earn")),
            ("campaign.code: must not be empty", Some("code")),
            (
                "objective \"7\": points: must be at least 1",
                Some("points"),
            ),
            ("", None),
        ] {
            assert_eq!(key_named_by(message), key, "{message}");
        }
    }

    #[test]
    fn a_key_is_found_in_its_own_table_only() {
        let text = "[[campaign]]\ncode = \"A\"\n  budget = 5\n\n[[campaign]]\nnth_trade = 0\n";
        assert_eq!(
            key_offset(text, 0, "budget"),
            Some(text.find("budget").unwrap())
        );
        assert_eq!(key_offset(text, 0, "code"), Some(13));
        // A sub-table is found by its header, past the table's other sub-tables.
        let program =
            "[program]\nname = \"P\"\n[program.earn]\npoints = 1\n[program.tiers]\nx = 1\n";
        assert_eq!(
            key_offset(program, 0, "tiers"),
            Some(program.find("[program.tiers]").unwrap())
        );
        assert_eq!(key_offset(program, 0, "kdp"), None);
        // Not in the first table (it is in the next one), not a prefix of another key.
        assert_eq!(key_offset(text, 0, "nth_trade"), None);
        assert_eq!(key_offset(text, 0, "bud"), None);
        let second = text.find("[[campaign]]\nnth").unwrap();
        assert_eq!(key_offset(text, second, "nth_trade"), Some(second + 13));
    }
}

#[cfg(test)]
mod part_tests {
    use super::{cuts, parse_all, PART_BYTES};
    use crate::rules::Source;

    const PROGRAM: &str =
        "[program]\nname = \"P\"\ntime_zone = \"+08:00\"\nbase_currency = \"HKD\"\n\
                           rounding = \"floor\"\ncurrencies = { HKD = \"1\" }\n[program.earn]\n\
                           base = \"payment_amount\"\npoints = 1\nper_amount = \"10\"\n\
                           [program.kdp]\npolicy = \"never\"\n\n";

    /// `count` campaigns; the `n`th's remark is `remark(n)` (written as given).
    fn campaigns(count: usize, remark: impl Fn(usize) -> String) -> String {
        (0..count)
            .map(|n| {
                format!(
                    "[[campaign]]\ncode = \"C{n}\"\nremark = {}\nstarts_at = \"2026-01-01T00:00:00Z\"\n\
                     ends_at = \"2027-01-01T00:00:00Z\"\nexpiry = \"QUARTER\"\n\
                     award = {{ fixed = {} }}\n\n",
                    remark(n),
                    n + 1
                )
            })
            .collect()
    }

    /// (code, remark, span, line of the span's start) of each campaign of `text` parsed by
    /// `parse_all`, and the same of `text` parsed whole; the tests of each.
    #[allow(clippy::type_complexity)]
    fn both_ways(text: &str) -> [Result<(Vec<(String, String, usize, usize)>, usize), String>; 2] {
        let source = Source {
            name: "big.toml".into(),
            text: text.into(),
        };
        assert!(
            !cuts(text, text.len() / PART_BYTES).is_empty(),
            "the file is parsed in parts"
        );
        let parsed = parse_all(std::slice::from_ref(&source));
        let (located, by_parts) = &parsed[0];
        let whole: Result<super::RawFile, _> = toml::from_str(text);
        let line_of = |offset: usize| located.place(offset).0;
        let summary = |file: &Result<super::RawFile, toml::de::Error>| match file {
            Ok(file) => Ok((
                file.campaign
                    .iter()
                    .map(|c| {
                        let span = c.span();
                        (
                            c.get_ref().code.clone(),
                            c.get_ref().remark.clone(),
                            span.start,
                            line_of(span.start),
                        )
                    })
                    .collect(),
                file.test.len(),
            )),
            Err(error) => Err(format!("{} at {:?}", error.message(), error.span())),
        };
        assert_eq!(
            located.newlines,
            text.match_indices('\n').map(|(i, _)| i).collect::<Vec<_>>(),
            "every line end, once, in order"
        );
        [summary(by_parts), summary(&whole)]
    }

    #[test]
    fn a_large_file_is_cut_before_its_campaigns_headers_only() {
        let text = format!("{PROGRAM}{}", campaigns(4000, |n| format!("\"r{n}\"")));
        assert!(text.len() > 2 * PART_BYTES);
        let at = cuts(&text, 4);
        assert_eq!(at.len(), 3, "{at:?}");
        for cut in &at {
            assert!(text[*cut..].starts_with("[[campaign]]\n"));
            assert!(text[..*cut].ends_with('\n'));
        }
        // About equal parts.
        for (k, cut) in at.iter().enumerate() {
            let target = (k + 1) * text.len() / 4;
            assert!(cut.abs_diff(target) < 300, "{cut} far from {target}");
        }
        // After the campaigns start, only arrays of tables and tables inside them.
        for other in ["[program.earn]\npoints = 1\n", "[x]\n", "  [ [campaign]]\n"] {
            assert_eq!(
                cuts(&format!("{text}{other}"), 4),
                Vec::<usize>::new(),
                "{other}"
            );
        }
        let tables = "[campaign.award]\nfixed = 1\n[[test]]\nx = 1\n[[objective]]\n[test.y]\n";
        let with_tables = format!("{text}{tables}");
        let at = cuts(&with_tables, 4);
        assert_eq!(at.len(), 3, "{at:?}");
        assert!(at
            .iter()
            .all(|cut| with_tables[*cut..].starts_with("[[campaign]]\n")));
        // Before them, anything.
        assert_eq!(cuts(&format!("[x]\n{text}"), 4).len(), 3);
    }

    #[test]
    fn a_file_parsed_in_parts_is_the_file_parsed_whole() {
        let text = format!(
            "{PROGRAM}{}[[test]]\nname = \"t\"\ntotal = 1\n\
             trade = {{ store_code = \"S\", payment_amount = \"10\", sales_time = \"2026-03-01T10:00:00Z\" }}\n",
            campaigns(4000, |n| format!("\"r{n}\""))
        );
        let [parts, whole] = both_ways(&text);
        assert_eq!(parts, whole);
        let (campaigns, tests) = parts.unwrap();
        assert_eq!((campaigns.len(), tests), (4000, 1));
        assert_eq!(
            campaigns[3999].3,
            PROGRAM.lines().count() + 3999 * 8 + 1,
            "its line in the file"
        );
    }

    #[test]
    fn a_cut_inside_a_multi_line_string_parses_the_file_whole() {
        // Every remark holds a line that is a campaign header: every cut falls in a string.
        let text = format!(
            "{PROGRAM}{}",
            campaigns(4000, |n| format!("\"\"\"\n[[campaign]]\nr{n}\"\"\""))
        );
        assert!(!cuts(&text, 4).is_empty());
        let [parts, whole] = both_ways(&text);
        assert_eq!(parts, whole);
        let (campaigns, _) = parts.unwrap();
        assert_eq!(campaigns.len(), 4000);
        assert_eq!(campaigns[7].1, "[[campaign]]\nr7");
    }

    #[test]
    fn a_large_programs_problems_are_listed_in_file_order() {
        // The problems come out as the campaigns are written, each at its line.
        let text = format!(
            "{PROGRAM}{}",
            campaigns(4000, |n| format!("\"r{n}\"")).replace("C2000\"", "C5\"")
        );
        let text = ["C10", "C1500", "C2999"].iter().fold(text, |text, code| {
            let at = text.find(&format!("code = \"{code}\"\n")).unwrap();
            let award = at + text[at..].find("award = { fixed = ").unwrap();
            let end = award + text[award..].find('}').unwrap();
            format!(
                "{}award = {{ fixed = 0 }}{}",
                &text[..award],
                &text[end + 1..]
            )
        });
        let source = Source {
            name: "big.toml".into(),
            text,
        };
        let Err(super::LoadError::Invalid { problems }) =
            super::compile(std::slice::from_ref(&source), "v".into())
        else {
            panic!("the program has problems");
        };
        let header = |n: usize| PROGRAM.lines().count() + n * 8 + 1;
        let found: Vec<(usize, &str)> = problems
            .iter()
            .map(|p| (p.line, p.message.split(':').next().unwrap()))
            .collect();
        assert_eq!(
            found,
            [
                (header(10) + 6, "campaign \"C10\""),
                (header(1500) + 6, "campaign \"C1500\""),
                (header(2000), "campaign code \"C5\" is used twice"),
                (header(2999) + 6, "campaign \"C2999\""),
            ],
            "{problems:#?}"
        );
    }

    #[test]
    fn an_error_in_a_later_part_is_where_the_whole_file_puts_it() {
        let mut text = format!("{PROGRAM}{}", campaigns(4000, |n| format!("\"r{n}\"")));
        text.push_str("[[campaign]]\ncode = \"LAST\"\nstarts_at = 5 5\n");
        let [parts, whole] = both_ways(&text);
        assert!(whole.is_err());
        assert_eq!(parts, whole);
    }
}
