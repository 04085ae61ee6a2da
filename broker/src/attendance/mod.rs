//! Attendance: check-ins judged against each organisation's rules (geofence circles and
//! polygons, Wi-Fi allow-lists, liveness, home locations), anti-cheat across check-ins (device
//! binding, buddy punching, device switching, impossible travel, mocked locations, duplicates),
//! shifts with grace and flexible starts, and the reports and payroll CSV built from them
//! (docs/PROTOCOL.md §16).
//!
//! The judging is pure: positions, rules and check-ins in, verdicts and rows out, time passed
//! in ([`evaluate`], [`Watch`], [`person_days`]); [`AttendanceMachine`] holds every
//! organisation's rules and history. One thread, the attendance loop ([`Attendance`]), owns that
//! machine: all check-ins of an organisation pass through it in order, so its anti-cheat history
//! needs no lock. Reads are served from the store on blocking tasks.

mod date;
mod dispatch;
mod evaluate;
mod geo;
mod machine;
mod reads;
mod report;
mod request;
mod rules;
mod service;
mod shift;
mod watch;
mod wire;

#[cfg(test)]
mod report_tests;
#[cfg(test)]
mod tests;

pub use date::{DateError, Day, minute_of_day};
pub(crate) use dispatch::dispatch;
pub use evaluate::{CheckIn, Kind, Liveness, Reason, Verdict, evaluate};
pub use geo::{Accuracy, EARTH_RADIUS_M, Fence, Fix, GeoError, GeoPoint};
pub use machine::{AttendanceMachine, Recorded, Snapshot, Who};
pub use reads::{ReportQuery, row_to_pb};
pub use report::{CSV_HEADER, Calendar, DayRow, DepartmentSummary, Person, Punch, csv_lines, person_days, summarise};
pub use request::{AttendanceRequest, parse};
pub use rules::{Bssid, BssidError, Limits, OrgRules, Proof, Rule, Scope, Site};
pub use service::{Attendance, Busy, HR_POSTER, HR_POSTER_DEVICE, HrPost, Outcome};
pub use shift::{Punctuality, Shift};
pub use watch::{Observation, Watch};
pub use wire::{CheckInInput, WireError, flag, kind, kind_to_pb, record};
