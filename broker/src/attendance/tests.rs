//! Table-driven tests of evaluation (sites, access points, liveness, home) and of every
//! anti-cheat flag, over one fixture organisation.

use std::collections::BTreeSet;

use herald_protocol::{DeviceId, UserId};

use super::evaluate::{CheckIn, Kind, Liveness, Reason, evaluate};
use super::geo::{Accuracy, EARTH_RADIUS_M, Fence, Fix, GeoPoint};
use super::rules::{Bssid, Limits, OrgRules, Proof, Rule, Scope, Site};
use super::watch::Watch;

/// Metres per degree of latitude.
const M_PER_DEG: f64 = EARTH_RADIUS_M * std::f64::consts::PI / 180.0;
const HQ: (f64, f64) = (31.2304, 121.4737);
const DEPOT: (f64, f64) = (31.3000, 121.5000);
const HOME: (f64, f64) = (31.1000, 121.3000);
const HQ_AP: &str = "aa:bb:cc:00:00:01";
const DEPOT_AP: &str = "aa:bb:cc:00:00:02";

pub(super) fn point(lat: f64, lon: f64) -> GeoPoint {
    GeoPoint::new(lat, lon).expect("valid test point")
}

pub(super) fn user(u: &str) -> UserId {
    UserId::new(u).expect("valid user id")
}

fn device(d: &str) -> DeviceId {
    DeviceId::new(d).expect("valid device id")
}

fn bssid(s: &str) -> Bssid {
    s.parse().expect("valid bssid")
}

fn rule(name: &str, scope: Scope, sites: &[&str], require: &[Proof]) -> Rule {
    Rule {
        name: name.into(),
        scope,
        sites: sites.iter().map(|s| (*s).to_owned()).collect(),
        require: require.iter().copied().collect(),
        home_radius_m: 200.0,
        shift: None,
    }
}

/// HQ is a 150 m circle with one access point; the depot a square about 220 m a side with
/// another. Frontline staff need HQ's fence and access point; managers a liveness check too;
/// drivers either site's fence; remote staff their home.
pub(super) fn org() -> OrgRules {
    let hq = Site {
        id: "hq".into(),
        fence: Fence::Circle { centre: point(HQ.0, HQ.1), radius_m: 150.0 },
        bssids: [bssid(HQ_AP)].into(),
    };
    let d = 0.001;
    let depot = Site {
        id: "depot".into(),
        fence: Fence::Polygon(vec![
            point(DEPOT.0 - d, DEPOT.1 - d),
            point(DEPOT.0 - d, DEPOT.1 + d),
            point(DEPOT.0 + d, DEPOT.1 + d),
            point(DEPOT.0 + d, DEPOT.1 - d),
        ]),
        bssids: [bssid(DEPOT_AP)].into(),
    };
    OrgRules {
        utc_offset_min: 480,
        workdays: 0b001_1111,
        sites: [("hq".to_owned(), hq), ("depot".to_owned(), depot)].into(),
        rules: vec![
            rule("managers", Scope::Role("manager".into()), &["hq"], &[Proof::Geofence, Proof::Liveness]),
            rule("frontline", Scope::Department("store".into()), &["hq"], &[Proof::Geofence, Proof::Bssid]),
            rule("drivers", Scope::Department("logistics".into()), &[], &[Proof::Geofence]),
            rule("wifi-only", Scope::Department("it".into()), &[], &[Proof::Bssid]),
            rule("remote", Scope::Department("remote".into()), &[], &[Proof::Home]),
        ],
        homes: [(user("rita"), point(HOME.0, HOME.1))].into(),
        hr_conversation_id: 0,
        retention_days: 0,
        limits: Limits::default(),
    }
}

pub(super) fn checkin(who: &str, dev: &str, at_ms: u64, (lat, lon): (f64, f64), accuracy: f64) -> CheckIn {
    CheckIn {
        user: user(who),
        device: device(dev),
        kind: Kind::In,
        at_ms,
        received_ms: at_ms,
        fix: Fix { point: point(lat, lon), accuracy: Accuracy::new(accuracy).expect("valid accuracy") },
        bssid: None,
        ssid: String::new(),
        liveness: None,
        mock_location: false,
        photo_ref: String::new(),
        site: None,
    }
}

fn north_of((lat, lon): (f64, f64), metres: f64) -> (f64, f64) {
    (lat + metres / M_PER_DEG, lon)
}

/// A check-in altered by a test case.
type Tweak = fn(&mut CheckIn);

/// An evaluation case: name, department, roles, position, accuracy, tweak, reason codes, site.
type EvalCase<'a> = (&'a str, &'a str, &'a [&'a str], (f64, f64), f64, Tweak, Vec<&'a str>, Option<&'a str>);

/// A check-in of an anti-cheat case: user, device, minutes, position.
type Step<'a> = (&'a str, &'a str, u64, (f64, f64));

#[test]
fn evaluation_table() {
    let rules = org();
    let none: Tweak = |_| {};
    let hq_ap: Tweak = |c| c.bssid = Some(bssid(HQ_AP));
    let depot_ap: Tweak = |c| c.bssid = Some(bssid(DEPOT_AP));
    let stranger_ap: Tweak = |c| c.bssid = Some(bssid("00:11:22:33:44:55"));
    let live: Tweak = |c| c.liveness = Some(Liveness { verifier: "face-sdk".into(), attestation: vec![1] });
    let mocked: Tweak = |c| c.mock_location = true;
    let field: Tweak = |c| c.kind = Kind::FieldVisit;
    let chose_depot: Tweak = |c| c.site = Some("depot".into());
    let cases: Vec<EvalCase<'_>> = vec![
        // (case, department, roles, where, accuracy, tweak, reason codes, matched site)
        ("frontline at HQ on its AP", "store", &[], HQ, 10.0, hq_ap, vec![], Some("hq")),
        ("frontline at HQ, no AP", "store", &[], HQ, 10.0, none, vec!["BSSID_MISSING"], Some("hq")),
        (
            "frontline at HQ on a stranger AP",
            "store",
            &[],
            HQ,
            10.0,
            stranger_ap,
            vec!["BSSID_NOT_ALLOWED"],
            Some("hq"),
        ),
        ("frontline at HQ on the depot's AP", "store", &[], HQ, 10.0, depot_ap, vec!["BSSID_NOT_ALLOWED"], Some("hq")),
        (
            "frontline 400 m out on HQ's AP",
            "store",
            &[],
            north_of(HQ, 400.0),
            10.0,
            hq_ap,
            vec!["OUTSIDE_GEOFENCE"],
            None,
        ),
        ("frontline 160 m out, 20 m accuracy", "store", &[], north_of(HQ, 160.0), 20.0, hq_ap, vec![], Some("hq")),
        ("frontline with 500 m accuracy", "store", &[], HQ, 500.0, hq_ap, vec!["ACCURACY_TOO_POOR"], Some("hq")),
        ("manager at HQ, live", "store", &["manager"], HQ, 5.0, live, vec![], Some("hq")),
        ("manager at HQ, no liveness", "store", &["manager"], HQ, 5.0, none, vec!["LIVENESS_MISSING"], Some("hq")),
        ("driver at the depot", "logistics", &[], DEPOT, 5.0, none, vec![], Some("depot")),
        ("driver at HQ", "logistics", &[], HQ, 5.0, none, vec![], Some("hq")),
        ("driver at HQ choosing the depot", "logistics", &[], HQ, 5.0, chose_depot, vec!["OUTSIDE_GEOFENCE"], None),
        (
            "frontline choosing the depot",
            "store",
            &[],
            DEPOT,
            5.0,
            chose_depot,
            vec!["SITE_NOT_ALLOWED", "BSSID_MISSING"],
            Some("depot"),
        ),
        ("wifi-only anywhere on a known AP", "it", &[], HOME, 5.0, depot_ap, vec![], Some("depot")),
        ("wifi-only on a stranger AP", "it", &[], HQ, 5.0, stranger_ap, vec!["BSSID_NOT_ALLOWED"], Some("hq")),
        ("remote worker at home", "remote", &[], north_of(HOME, 150.0), 30.0, none, vec![], None),
        ("remote worker 1 km away", "remote", &[], north_of(HOME, 1_000.0), 0.0, none, vec!["AWAY_FROM_HOME"], None),
        ("mocked location", "logistics", &[], DEPOT, 5.0, mocked, vec!["MOCK_LOCATION"], Some("depot")),
        ("field visit far away", "store", &[], HOME, 5.0, field, vec![], None),
        ("nobody's rule", "finance", &[], HQ, 5.0, none, vec!["NO_RULE"], None),
    ];
    for (case, department, roles, at, accuracy, tweak, codes, site) in cases {
        let who = if department == "remote" { "rita" } else { "sam" };
        let mut c = checkin(who, "phone-1", 1_000, at, accuracy);
        tweak(&mut c);
        let roles: BTreeSet<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        let verdict = evaluate(&rules, rules.rule_for(department, &roles), &c);
        let got: Vec<&str> = verdict.reasons.iter().map(Reason::code).collect();
        assert_eq!(got, codes, "{case}: {:?}", verdict.reasons);
        assert_eq!(verdict.site.as_deref(), site, "{case}");
    }
}

#[test]
fn outside_by_counts_metres_beyond_the_accuracy() {
    let rules = org();
    let rule = rules.rule_for("logistics", &BTreeSet::new());
    for (out, accuracy, by_m) in [(400.0, 10.0, 240), (1_150.0, 0.0, 1_000), (151.0, 0.0, 1)] {
        let verdict = evaluate(&rules, rule, &checkin("sam", "p", 1, north_of(HQ, out), accuracy));
        // The depot is further away than HQ from each of these points.
        assert_eq!(verdict.reasons, vec![Reason::OutsideGeofence { site: "hq".into(), by_m }], "{out} ±{accuracy}");
        assert_eq!(verdict.reasons[0].to_string(), format!("outside geofence of hq by {by_m} m"));
    }
    let no_home = evaluate(&rules, rules.rule_for("remote", &BTreeSet::new()), &checkin("sam", "p", 1, HOME, 5.0));
    assert_eq!(no_home.reasons, vec![Reason::NoHome]);
}

const MIN: u64 = 60_000;
const HOUR: u64 = 60 * MIN;

#[test]
fn anti_cheat_table() {
    let limits = Limits::default();
    // Each case: the check-ins in order (user, device, minutes, position), and the reason codes
    // expected on the last one.
    let cases: Vec<(&str, Vec<Step<'_>>, Vec<&str>)> = vec![
        ("first use binds", vec![("ann", "a1", 0, HQ)], vec![]),
        ("the bound device again, hours later", vec![("ann", "a1", 0, HQ), ("ann", "a1", 9 * 60, HQ)], vec![]),
        (
            "another device than the bound one",
            vec![("ann", "a1", 0, HQ), ("ann", "a2", 9 * 60, HQ)],
            vec!["DEVICE_NOT_BOUND"],
        ),
        ("one device for two users", vec![("ann", "a1", 0, HQ), ("bob", "a1", 1, HQ)], vec!["BUDDY_PUNCHING"]),
        (
            "one device for three users",
            vec![("ann", "a1", 0, HQ), ("bob", "a1", 1, HQ), ("cat", "a1", 2, HQ)],
            vec!["BUDDY_PUNCHING"],
        ),
        ("a shared device, but a day apart", vec![("ann", "a1", 0, HQ), ("bob", "a1", 13 * 60, HQ)], vec![]),
        (
            "three devices in a week",
            vec![("ann", "a1", 0, HQ), ("ann", "a2", 24 * 60, HQ), ("ann", "a3", 48 * 60, HQ)],
            vec!["DEVICE_NOT_BOUND", "DEVICE_SWITCHING"],
        ),
        (
            "Shanghai to Beijing in an hour",
            vec![("ann", "a1", 0, HQ), ("ann", "a1", 60, (39.9042, 116.4074))],
            vec!["IMPOSSIBLE_TRAVEL"],
        ),
        (
            "Shanghai to Beijing in five hours (a fast train)",
            vec![("ann", "a1", 0, HQ), ("ann", "a1", 5 * 60, (39.9042, 116.4074))],
            vec![],
        ),
        ("HQ to the depot in 20 minutes", vec![("ann", "a1", 0, HQ), ("ann", "a1", 20, DEPOT)], vec![]),
        ("a duplicate a minute later", vec![("ann", "a1", 0, HQ), ("ann", "a1", 1, HQ)], vec!["DUPLICATE"]),
        (
            "a duplicate 500 m away at once",
            vec![("ann", "a1", 0, HQ), ("ann", "a1", 0, north_of(HQ, 500.0))],
            vec!["DUPLICATE", "IMPOSSIBLE_TRAVEL"],
        ),
    ];
    for (case, checkins, codes) in cases {
        let mut watch = Watch::default();
        let mut last = Vec::new();
        for (who, dev, minutes, at) in checkins {
            last = watch.observe(&limits, &checkin(who, dev, minutes * MIN, at, 10.0)).reasons;
        }
        let got: Vec<&str> = last.iter().map(Reason::code).collect();
        assert_eq!(got, codes, "{case}: {last:?}");
    }
}

#[test]
fn binding_is_made_on_first_use_and_rebinding_is_the_admins() {
    let limits = Limits::default();
    let mut watch = Watch::default();
    let first = watch.observe(&limits, &checkin("ann", "a1", 0, HQ, 5.0));
    assert_eq!(first.bound, Some(device("a1")));
    let second = watch.observe(&limits, &checkin("ann", "a1", 10 * HOUR, HQ, 5.0));
    assert_eq!(second, Default::default());

    // A new phone: flagged until an admin rebinds.
    let new_phone = watch.observe(&limits, &checkin("ann", "a2", 24 * HOUR, HQ, 5.0));
    assert_eq!(new_phone.reasons, vec![Reason::DeviceNotBound { bound: device("a1") }]);
    watch.rebind(&user("ann"), Some(device("a2")));
    let after = watch.observe(&limits, &checkin("ann", "a2", 34 * HOUR, HQ, 5.0));
    assert_eq!(after, Default::default(), "rebinding also forgives the switch");

    // Unbinding: the next device used is bound.
    watch.rebind(&user("ann"), None);
    let rebound = watch.observe(&limits, &checkin("ann", "a3", 48 * HOUR, HQ, 5.0));
    assert_eq!(rebound.bound, Some(device("a3")));
    assert_eq!(watch.binding(&user("ann")), Some(&device("a3")));

    let buddy = watch.observe(&limits, &checkin("bob", "a3", 48 * HOUR + MIN, HQ, 5.0));
    assert_eq!(buddy.reasons, vec![Reason::BuddyPunching { other: user("ann"), users: 1 }]);
    assert_eq!(buddy.reasons[0].subject(), "ann");
}
