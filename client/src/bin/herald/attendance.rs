//! `herald checkin` and `herald attendance …`: check in, and see your own attendance.

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use herald_client::{CheckInRequest, Client, pb};

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
pub(crate) enum AttendanceCommand {
    /// Your attendance today (or on --date): the day's summary, then one line per check-in.
    Today {
        /// Another day, YYYY-MM-DD.
        #[arg(long)]
        date: Option<String>,
    },
}

/// Checks in; prints `accepted id=ID site=SITE` or `flagged id=ID` and one `flag CODE: message`
/// line per reason.
pub(crate) async fn check_in(client: &Client, args: CheckInArgs) -> Result<()> {
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
    print!("{}", record_lines(&record));
    Ok(())
}

fn record_lines(record: &pb::CheckInRecord) -> String {
    let status = if record.flags.is_empty() { "accepted" } else { "flagged" };
    let kind = pb::CheckInKind::try_from(record.kind).map_or("unknown", |k| k.as_str_name());
    let mut out = format!(
        "{status} id={} kind={} at_ms={} site={} rule={}\n",
        record.check_in_id,
        kind.trim_start_matches("CHECK_IN_KIND_").to_lowercase(),
        record.at_ms,
        record.site_id,
        record.rule
    );
    for flag in &record.flags {
        out.push_str(&format!("  flag {}: {}\n", flag.code, flag.message));
    }
    out
}

/// `attendance …`.
pub(crate) async fn attendance(client: &Client, command: AttendanceCommand) -> Result<()> {
    match command {
        AttendanceCommand::Today { date } => {
            let day = client.attendance_day(date.as_deref()).await?;
            if let Some(row) = day.row {
                println!(
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
                );
            }
            for record in &day.check_ins {
                print!("{}", record_lines(record));
            }
            Ok(())
        }
    }
}
