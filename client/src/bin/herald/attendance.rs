//! `herald checkin` and `herald attendance …`: check in, and see your own attendance.

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use herald_client::{CheckInRequest, Client, pb};
use serde::Serialize;

use crate::messaging::lines;
use crate::output::{Output, Printer, enum_word};

/// What a check-in records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Kind {
    /// Arriving for work.
    In,
    /// Leaving work.
    Out,
    /// A visit away from the sites.
    Field,
}

/// `checkin` arguments.
#[derive(Debug, Args)]
pub(crate) struct CheckInArgs {
    /// Latitude, WGS 84 degrees.
    #[arg(long, allow_negative_numbers = true)]
    lat: f64,
    /// Longitude, WGS 84 degrees.
    #[arg(long, allow_negative_numbers = true)]
    lon: f64,
    /// The fix's accuracy radius, metres.
    #[arg(long, default_value_t = 10.0)]
    accuracy: f64,
    /// The Wi-Fi access point the device is on, aa:bb:cc:dd:ee:ff.
    #[arg(long)]
    bssid: Option<String>,
    /// In, out or a field visit.
    #[arg(long, value_enum, default_value_t = Kind::In)]
    kind: Kind,
    /// The site you are at, if you choose one.
    #[arg(long)]
    site: Option<String>,
}

/// Attendance views.
#[derive(Debug, Subcommand)]
#[command(after_help = crate::manual::ATTENDANCE)]
pub(crate) enum AttendanceCommand {
    /// Your attendance today (or on --date): the day's summary, then one line per check-in.
    Today {
        /// Another day, YYYY-MM-DD.
        #[arg(long)]
        date: Option<String>,
    },
}

/// A check-in as the broker recorded and judged it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CheckInOut {
    check_in_id: u64,
    /// `accepted`, or `flagged` when any rule or anti-cheat check raised a flag.
    status: &'static str,
    /// `in`, `out` or `field_visit`.
    kind: String,
    at_ms: u64,
    latitude: f64,
    longitude: f64,
    accuracy_m: f64,
    /// The site it matched; empty if none.
    site_id: String,
    /// The rule it was judged by.
    rule: String,
    flags: Vec<FlagOut>,
}

/// Why a check-in was flagged.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FlagOut {
    /// Such as `OUTSIDE_GEOFENCE` (docs/ATTENDANCE.md).
    code: String,
    message: String,
}

impl From<&pb::CheckInRecord> for CheckInOut {
    fn from(r: &pb::CheckInRecord) -> Self {
        let kind = pb::CheckInKind::try_from(r.kind).ok().map(|k| k.as_str_name());
        CheckInOut {
            check_in_id: r.check_in_id,
            status: if r.flags.is_empty() { "accepted" } else { "flagged" },
            kind: enum_word(r.kind, kind, "CHECK_IN_KIND_"),
            at_ms: r.at_ms,
            latitude: r.latitude,
            longitude: r.longitude,
            accuracy_m: r.accuracy_m,
            site_id: r.site_id.clone(),
            rule: r.rule.clone(),
            flags: r.flags.iter().map(|f| FlagOut { code: f.code.clone(), message: f.message.clone() }).collect(),
        }
    }
}

impl Output for CheckInOut {
    /// `accepted|flagged id= kind= at_ms= site= rule=`, then `  flag CODE: message` per flag.
    fn human(&self) -> String {
        let head = format!(
            "{} id={} kind={} at_ms={} site={} rule={}",
            self.status, self.check_in_id, self.kind, self.at_ms, self.site_id, self.rule
        );
        let flags = self.flags.iter().map(|f| format!("  flag {}: {}", f.code, f.message));
        lines(std::iter::once(head).chain(flags))
    }
}

/// A day's attendance: the summary (`null` when the broker has none) and the check-ins.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DayOut {
    summary: Option<SummaryOut>,
    check_ins: Vec<CheckInOut>,
}

/// A day's summary row, as in the payroll export.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SummaryOut {
    /// YYYY-MM-DD.
    date: String,
    first_in_ms: u64,
    last_out_ms: u64,
    worked_minutes: u64,
    late_minutes: u32,
    left_early_minutes: u32,
    absent: bool,
    /// How many check-ins were flagged.
    flagged: u32,
    check_ins: u32,
}

impl From<pb::AttendanceDayRow> for SummaryOut {
    fn from(row: pb::AttendanceDayRow) -> Self {
        SummaryOut {
            date: row.date,
            first_in_ms: row.first_in_ms,
            last_out_ms: row.last_out_ms,
            worked_minutes: row.worked_minutes,
            late_minutes: row.late_minutes,
            left_early_minutes: row.left_early_minutes,
            absent: row.absent,
            flagged: row.flagged,
            check_ins: row.check_ins,
        }
    }
}

impl Output for DayOut {
    fn human(&self) -> String {
        let summary = self.summary.iter().map(|row| {
            format!(
                "day {} first_in_ms={} last_out_ms={} worked_minutes={} late_minutes={} left_early_minutes={} absent={} flagged={} check_ins={}",
                row.date,
                row.first_in_ms,
                row.last_out_ms,
                row.worked_minutes,
                row.late_minutes,
                row.left_early_minutes,
                row.absent,
                row.flagged,
                row.check_ins
            )
        });
        lines(summary.chain(self.check_ins.iter().map(Output::human)))
    }
}

/// Checks in; prints the record as the broker judged it.
pub(crate) async fn check_in(client: &Client, printer: Printer, args: CheckInArgs) -> Result<()> {
    let kind = match args.kind {
        Kind::In => pb::CheckInKind::In,
        Kind::Out => pb::CheckInKind::Out,
        Kind::Field => pb::CheckInKind::FieldVisit,
    };
    let request = CheckInRequest {
        kind,
        latitude: args.lat,
        longitude: args.lon,
        accuracy_m: args.accuracy,
        bssid: args.bssid,
        site_id: args.site,
        ..Default::default()
    };
    let record = client.check_in(request).await?;
    printer.print(&CheckInOut::from(&record))
}

/// `attendance …`.
pub(crate) async fn attendance(client: &Client, printer: Printer, command: AttendanceCommand) -> Result<()> {
    match command {
        AttendanceCommand::Today { date } => {
            let day = client.attendance_day(date.as_deref()).await?;
            let check_ins = day.check_ins.iter().map(CheckInOut::from).collect();
            printer.print(&DayOut { summary: day.row.map(SummaryOut::from), check_ins })
        }
    }
}
