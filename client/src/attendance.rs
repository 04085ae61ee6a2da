//! Attendance (docs/PROTOCOL.md §16): checking in, the caller's day, and for administrators the
//! organisation's rules, reports with the payroll CSV, and device rebinding.

use herald_protocol::pb;

use crate::{Admin, Client, ClientError};

/// What a check-in records: where the device is, how sure it is, and what else it can prove.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckInRequest {
    /// In, out or a field visit.
    pub kind: pb::CheckInKind,
    /// WGS 84 degrees.
    pub latitude: f64,
    /// WGS 84 degrees.
    pub longitude: f64,
    /// The fix's accuracy radius, metres.
    pub accuracy_m: f64,
    /// The associated Wi-Fi access point, `aa:bb:cc:dd:ee:ff`.
    pub bssid: Option<String>,
    /// Its network name.
    pub ssid: Option<String>,
    /// A liveness attestation: the verifier and its opaque proof.
    pub liveness: Option<(String, Vec<u8>)>,
    /// The device detected a mocked location; report it honestly, the broker flags it.
    pub mock_location: bool,
    /// The site the user chose.
    pub site_id: Option<String>,
    /// When, by the device clock, Unix ms; `None`: now (the broker's clock).
    pub client_time_ms: Option<u64>,
}

impl Client {
    /// Checks the caller in. The answer is the durable record: accepted, or flagged with
    /// reasons (and then also posted to HR).
    ///
    /// # Errors
    /// INVALID_LOCATION (coordinates out of range, NaN, negative accuracy), CLOCK_SKEW,
    /// UNKNOWN_SITE, NOT_FOUND (the organisation has no attendance rules), INVALID_ARGUMENT.
    /// Nothing is recorded then.
    ///
    /// # Cancel safety
    /// Dropping the future does not withdraw the check-in.
    pub async fn check_in(&self, request: CheckInRequest) -> Result<pb::CheckInRecord, ClientError> {
        let body = pb::CheckIn {
            user_id: String::new(),
            kind: request.kind.into(),
            client_time_ms: request.client_time_ms.unwrap_or(0),
            latitude: request.latitude,
            longitude: request.longitude,
            accuracy_m: request.accuracy_m,
            bssid: request.bssid.unwrap_or_default(),
            ssid: request.ssid.unwrap_or_default(),
            liveness: request.liveness.map(|(verifier, attestation)| pb::Liveness { verifier, attestation }),
            mock_location: request.mock_location,
            photo_ref: String::new(),
            site_id: request.site_id.unwrap_or_default(),
        };
        let result: pb::CheckInResult = self.call(body).await?;
        result.record.ok_or_else(|| ClientError::Protocol("CHECK_IN_RESULT without a record".into()))
    }

    /// The caller's attendance on `date` (`YYYY-MM-DD`, the organisation's local time), or
    /// today for `None`.
    ///
    /// # Errors
    /// INVALID_ARGUMENT for a bad date; NOT_FOUND without attendance rules.
    ///
    /// # Cancel safety
    /// A read: safe to drop.
    pub async fn attendance_day(&self, date: Option<&str>) -> Result<pb::AttendanceDay, ClientError> {
        self.call(pb::AttendanceDayQuery { date: date.unwrap_or_default().to_owned() }).await
    }
}

impl Admin<'_> {
    /// Replaces the organisation's attendance rules; the next check-in is judged by them.
    ///
    /// # Errors
    /// INVALID_ARGUMENT naming what is wrong; the old rules stand.
    ///
    /// # Cancel safety
    /// Dropping the future may leave the new rules or the old ones in force; repeating it is
    /// harmless (it replaces them with the same rules).
    pub async fn set_attendance_rules(
        &self,
        rules: pb::AttendanceRules,
    ) -> Result<pb::AttendanceRulesInfo, ClientError> {
        self.client.call(pb::AttendanceRulesSet { org_id: self.org_id(), rules: Some(rules) }).await
    }

    /// The organisation's attendance rules (`rules` unset if it has none).
    ///
    /// # Errors
    /// See [`Admin`].
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads.
    pub async fn attendance_rules(&self) -> Result<pb::AttendanceRulesInfo, ClientError> {
        self.client.call(pb::AttendanceRulesGet { org_id: self.org_id() }).await
    }

    /// One page of the report for `from..=to` (`YYYY-MM-DD`): up to `limit` users after
    /// `after_user_id`, of `department` if not empty.
    ///
    /// # Errors
    /// INVALID_ARGUMENT for bad dates or a period over 366 days.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads (each page the broker receives is audited as
    /// `attendance_exported`).
    pub async fn attendance_report(
        &self,
        from: &str,
        to: &str,
        department: &str,
        after_user_id: &str,
        limit: u32,
    ) -> Result<pb::AttendanceReportPage, ClientError> {
        let request = pb::AttendanceReport {
            org_id: self.org_id(),
            from: from.to_owned(),
            to: to.to_owned(),
            department: department.to_owned(),
            after_user_id: after_user_id.to_owned(),
            limit,
        };
        self.client.call(request).await
    }

    /// The whole report for a period as payroll CSV, header included, paging through every user.
    ///
    /// # Errors
    /// As [`Admin::attendance_report`].
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads; the pages already fetched are lost with the future, so call
    /// it again.
    pub async fn attendance_csv(&self, from: &str, to: &str, department: &str) -> Result<String, ClientError> {
        let mut csv = String::from(CSV_HEADER);
        csv.push('\n');
        let mut after = String::new();
        loop {
            let page = self.attendance_report(from, to, department, &after, 1000).await?;
            csv.push_str(&page.csv);
            if page.next_user_id.is_empty() {
                return Ok(csv);
            }
            after = page.next_user_id;
        }
    }

    /// Binds `user_id`'s attendance to `device_id`, or (`None`) to the next device they use.
    ///
    /// # Errors
    /// See [`Admin`].
    ///
    /// # Cancel safety
    /// Dropping the future may leave the binding changed or not; repeating it is harmless
    /// (with `None`, it frees again a binding a check-in made in between).
    pub async fn rebind_attendance_device(
        &self,
        user_id: &str,
        device_id: Option<&str>,
    ) -> Result<pb::AttendanceBinding, ClientError> {
        let request = pb::DeviceRebind {
            org_id: self.org_id(),
            user_id: user_id.to_owned(),
            device_id: device_id.unwrap_or_default().to_owned(),
        };
        self.client.call(request).await
    }
}

/// The payroll CSV's header row (docs/PROTOCOL.md §16.8).
pub const CSV_HEADER: &str =
    "date,user_id,department,first_in,last_out,worked_minutes,late_minutes,left_early_minutes,absent,flagged,check_ins";
