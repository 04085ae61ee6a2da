//! `herald-broker attendance …` (part of the binary): the payroll export, an organisation's
//! rules from a JSON file, and device rebinding, over the protocol like `admin` (and with the
//! same connection options and default operator token).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use herald_broker::config::Config;
use herald_client::pb;
use serde::Deserialize;

use crate::cli_admin::{Target, connect};

/// `herald-broker attendance` arguments.
#[derive(Debug, Args)]
pub(crate) struct AttendanceArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: AttendanceCommand,
}

/// Attendance administration.
#[derive(Debug, Subcommand)]
pub(crate) enum AttendanceCommand {
    /// Write the payroll CSV for a period to stdout (docs/PROTOCOL.md §16.8 lists the columns):
    /// `herald-broker attendance export --org ORG --from 2026-11-01 --to 2026-11-30 > nov.csv`.
    Export {
        /// First day, YYYY-MM-DD (the organisation's local time).
        #[arg(long)]
        from: String,
        /// Last day, inclusive.
        #[arg(long)]
        to: String,
        /// Only this department.
        #[arg(long, default_value = "")]
        department: String,
    },
    /// Print per-department totals for a period, one line per department.
    Summary {
        /// First day, YYYY-MM-DD.
        #[arg(long)]
        from: String,
        /// Last day, inclusive.
        #[arg(long)]
        to: String,
    },
    /// Replace the organisation's rules with those of a JSON file (docs/ATTENDANCE.md), live.
    SetRules {
        /// The JSON file.
        file: PathBuf,
    },
    /// Show whether the organisation has rules, and their outline.
    ShowRules,
    /// Bind a user's attendance to a device, or without DEVICE to the next one they use.
    Rebind {
        /// The user.
        user: String,
        /// The device.
        device: Option<String>,
    },
}

/// Runs an attendance command against the broker `config` describes.
pub(crate) async fn run(config: &Config, args: AttendanceArgs) -> Result<()> {
    let client = connect(config, &args.target).await?;
    let admin = args.target.admin(&client);
    let outcome = async {
        match args.command {
            AttendanceCommand::Export { from, to, department } => {
                print!("{}", admin.attendance_csv(&from, &to, &department).await?);
            }
            AttendanceCommand::Summary { from, to } => summary(&admin, &from, &to).await?,
            AttendanceCommand::SetRules { file } => {
                let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
                let rules: RulesFile =
                    serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
                let info = admin.set_attendance_rules(rules.to_pb()?).await?;
                print_outline(&info);
            }
            AttendanceCommand::ShowRules => print_outline(&admin.attendance_rules().await?),
            AttendanceCommand::Rebind { user, device } => {
                let binding = admin.rebind_attendance_device(&user, device.as_deref()).await?;
                let device = if binding.device_id.is_empty() { "(next used)" } else { &binding.device_id };
                println!("user={} device={device}", binding.user_id);
            }
        }
        anyhow::Ok(())
    }
    .await;
    client.close().await;
    outcome
}

async fn summary(admin: &herald_client::Admin<'_>, from: &str, to: &str) -> Result<()> {
    let mut totals: std::collections::BTreeMap<String, pb::AttendanceSummary> = std::collections::BTreeMap::new();
    let mut after = String::new();
    loop {
        let page = admin.attendance_report(from, to, "", &after, 1000).await?;
        for s in page.summaries {
            let t = totals.entry(s.department.clone()).or_default();
            t.people += s.people;
            t.days_present += s.days_present;
            t.absences += s.absences;
            t.late_days += s.late_days;
            t.left_early_days += s.left_early_days;
            t.flagged += s.flagged;
            t.worked_minutes += s.worked_minutes;
        }
        if page.next_user_id.is_empty() {
            break;
        }
        after = page.next_user_id;
    }
    for (department, t) in totals {
        println!(
            "department={department:?} people={} days_present={} absences={} late_days={} left_early_days={} flagged={} worked_minutes={}",
            t.people, t.days_present, t.absences, t.late_days, t.left_early_days, t.flagged, t.worked_minutes
        );
    }
    Ok(())
}

fn print_outline(info: &pb::AttendanceRulesInfo) {
    match &info.rules {
        None => println!("org={} rules=none", info.org_id),
        Some(r) => {
            let sites: Vec<&str> = r.sites.iter().map(|s| s.site_id.as_str()).collect();
            let rules: Vec<&str> = r.rules.iter().map(|x| x.name.as_str()).collect();
            println!(
                "org={} utc_offset_min={} sites={} rules={} homes={} hr_conversation={} retention_days={}",
                info.org_id,
                r.utc_offset_min,
                sites.join(","),
                rules.join(","),
                r.homes.len(),
                r.hr_conversation_id,
                r.retention_days
            );
        }
    }
}

/// The rules file: docs/ATTENDANCE.md shows an example.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    utc_offset_min: i32,
    /// e.g. ["mon", "tue", "wed", "thu", "fri"]; empty: Monday to Friday.
    #[serde(default)]
    workdays: Vec<String>,
    #[serde(default)]
    sites: Vec<SiteFile>,
    #[serde(default)]
    rules: Vec<RuleFile>,
    #[serde(default)]
    homes: Vec<HomeFile>,
    #[serde(default)]
    hr_conversation_id: u64,
    #[serde(default)]
    retention_days: u32,
    #[serde(default)]
    limits: LimitsFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteFile {
    id: String,
    circle: Option<CircleFile>,
    /// `[[lat, lon], …]`.
    #[serde(default)]
    polygon: Vec<[f64; 2]>,
    #[serde(default)]
    bssids: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CircleFile {
    lat: f64,
    lon: f64,
    radius_m: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    name: String,
    #[serde(default)]
    department: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    sites: Vec<String>,
    /// "geofence", "bssid", "liveness", "home".
    #[serde(default)]
    require: Vec<String>,
    #[serde(default)]
    home_radius_m: f64,
    shift: Option<ShiftFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShiftFile {
    /// "09:00".
    start: String,
    end: String,
    #[serde(default)]
    grace_min: u32,
    #[serde(default)]
    flex_min: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HomeFile {
    user_id: String,
    lat: f64,
    lon: f64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    max_accuracy_m: Option<f64>,
    max_skew_ms: Option<u64>,
    max_speed_kmh: Option<f64>,
    duplicate_window_ms: Option<u64>,
    buddy_window_ms: Option<u64>,
    switch_window_ms: Option<u64>,
    max_devices: Option<u32>,
}

fn minutes(hhmm: &str) -> Result<u32> {
    let (h, m) = hhmm.split_once(':').with_context(|| format!("{hhmm:?} is not HH:MM"))?;
    let (h, m): (u32, u32) = (h.parse()?, m.parse()?);
    anyhow::ensure!(h < 24 && m < 60, "{hhmm:?} is not a time of day");
    Ok(h * 60 + m)
}

impl RulesFile {
    fn to_pb(&self) -> Result<pb::AttendanceRules> {
        const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        let mut workdays = 0;
        for day in &self.workdays {
            let index = DAYS
                .iter()
                .position(|d| day.eq_ignore_ascii_case(d))
                .with_context(|| format!("unknown day {day:?}"))?;
            workdays |= 1 << index;
        }
        let proof = |name: &str| -> Result<i32> {
            Ok(match name {
                "geofence" => pb::AttendanceProof::Geofence,
                "bssid" => pb::AttendanceProof::Bssid,
                "liveness" => pb::AttendanceProof::Liveness,
                "home" => pb::AttendanceProof::Home,
                other => anyhow::bail!("unknown proof {other:?} (geofence, bssid, liveness, home)"),
            }
            .into())
        };
        let rules = self
            .rules
            .iter()
            .map(|r| {
                let shift = r
                    .shift
                    .as_ref()
                    .map(|s| -> Result<_> {
                        Ok(pb::AttendanceShift {
                            start_min: minutes(&s.start)?,
                            end_min: minutes(&s.end)?,
                            grace_min: s.grace_min,
                            flex_min: s.flex_min,
                        })
                    })
                    .transpose()?;
                Ok(pb::AttendanceRule {
                    name: r.name.clone(),
                    department: r.department.clone(),
                    role: r.role.clone(),
                    site_ids: r.sites.clone(),
                    require: r.require.iter().map(|p| proof(p)).collect::<Result<_>>()?,
                    home_radius_m: r.home_radius_m,
                    shift,
                })
            })
            .collect::<Result<_>>()?;
        let l = &self.limits;
        Ok(pb::AttendanceRules {
            utc_offset_min: self.utc_offset_min,
            workdays,
            sites: self
                .sites
                .iter()
                .map(|s| pb::AttendanceSite {
                    site_id: s.id.clone(),
                    circle: s.circle.as_ref().map(|c| pb::GeoCircle {
                        latitude: c.lat,
                        longitude: c.lon,
                        radius_m: c.radius_m,
                    }),
                    polygon: s
                        .polygon
                        .iter()
                        .map(|[lat, lon]| pb::GeoVertex { latitude: *lat, longitude: *lon })
                        .collect(),
                    bssids: s.bssids.clone(),
                })
                .collect(),
            rules,
            homes: self
                .homes
                .iter()
                .map(|h| pb::HomeLocation { user_id: h.user_id.clone(), latitude: h.lat, longitude: h.lon })
                .collect(),
            hr_conversation_id: self.hr_conversation_id,
            retention_days: self.retention_days,
            limits: Some(pb::AttendanceLimits {
                max_accuracy_m: l.max_accuracy_m,
                max_skew_ms: l.max_skew_ms,
                max_speed_kmh: l.max_speed_kmh,
                duplicate_window_ms: l.duplicate_window_ms,
                buddy_window_ms: l.buddy_window_ms,
                switch_window_ms: l.switch_window_ms,
                max_devices: l.max_devices,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let text = include_str!("../../docs/attendance-rules.example.json");
        let rules: RulesFile = serde_json::from_str(text).expect("the example parses");
        let rules = rules.to_pb().expect("the example converts");
        assert_eq!(rules.workdays, 0b001_1111);
        assert_eq!(rules.sites.len(), 2);
        assert_eq!(rules.rules[0].shift.as_ref().map(|s| (s.start_min, s.end_min)), Some((540, 1080)));
        assert!(herald_broker::attendance::OrgRules::try_from(&rules).is_ok(), "the broker accepts it");
        assert!(minutes("24:00").is_err() && minutes("9").is_err());
    }
}
