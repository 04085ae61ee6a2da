//! Attendance: check-ins judged against each organisation's rules (geofence circles and
//! polygons, Wi-Fi allow-lists, liveness, home locations), anti-cheat across check-ins (device
//! binding, buddy punching, device switching, impossible travel, mocked locations, duplicates),
//! shifts with grace and flexible starts, and the reports and payroll CSV built from them.
//!
//! Everything here is pure: positions, rules and check-ins in, verdicts and rows out, time
//! passed in. The attendance loop (`crate::attendance::desk`) owns each organisation's
//! [`Watch`] and does the storage and publishing around it.

mod date;
mod evaluate;
mod geo;
mod report;
mod rules;
mod shift;
mod watch;

#[cfg(test)]
mod report_tests;
#[cfg(test)]
mod tests;

pub use date::{DateError, Day, minute_of_day};
pub use evaluate::{CheckIn, Kind, Liveness, Reason, Verdict, evaluate};
pub use geo::{Accuracy, EARTH_RADIUS_M, Fence, Fix, GeoError, GeoPoint};
pub use report::{CSV_HEADER, Calendar, DayRow, DepartmentSummary, Person, Punch, csv_lines, person_days, summarise};
pub use rules::{Bssid, BssidError, Limits, OrgRules, Proof, Rule, Scope, Site};
pub use shift::{Punctuality, Shift};
pub use watch::{Observation, Watch};
