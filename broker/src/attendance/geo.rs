//! Geodesy: great-circle distances, circle and polygon geofences, with the GPS fix's accuracy
//! taken into account.
//!
//! Distances use the haversine formula on a sphere of the Earth's mean radius: within 0.5 % of
//! the ellipsoid everywhere, far below a phone's GPS error. Polygons are tested in a local
//! tangent plane centred on the fence (longitudes unwrapped around it, so a fence across the
//! antimeridian is no special case); that is exact enough for fences up to tens of kilometres,
//! which is what a site is.

/// The Earth's mean radius, metres (IUGG).
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Why a position was refused.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum GeoError {
    /// A coordinate or the accuracy is NaN or infinite.
    #[error("coordinates and accuracy must be finite numbers")]
    NotFinite,
    /// Latitude outside -90..=90 degrees.
    #[error("latitude {0} is outside -90..=90")]
    Latitude(f64),
    /// Longitude outside -180..=180 degrees.
    #[error("longitude {0} is outside -180..=180")]
    Longitude(f64),
    /// A negative accuracy radius.
    #[error("accuracy {0} m is negative")]
    Accuracy(f64),
}

/// A valid position on the Earth, degrees (WGS 84).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoPoint {
    lat: f64,
    lon: f64,
}

impl GeoPoint {
    /// A position, checked.
    ///
    /// # Errors
    /// [`GeoError`] for NaN, infinities or coordinates out of range.
    pub fn new(lat: f64, lon: f64) -> Result<Self, GeoError> {
        if !lat.is_finite() || !lon.is_finite() {
            return Err(GeoError::NotFinite);
        }
        if !(-90.0..=90.0).contains(&lat) {
            return Err(GeoError::Latitude(lat));
        }
        if !(-180.0..=180.0).contains(&lon) {
            return Err(GeoError::Longitude(lon));
        }
        Ok(Self { lat, lon })
    }

    /// Latitude, degrees.
    pub fn lat(self) -> f64 {
        self.lat
    }

    /// Longitude, degrees.
    pub fn lon(self) -> f64 {
        self.lon
    }

    /// Great-circle distance to `other`, metres (haversine).
    pub fn distance_m(self, other: GeoPoint) -> f64 {
        let (p1, p2) = (self.lat.to_radians(), other.lat.to_radians());
        let dp = p2 - p1;
        let dl = (other.lon - self.lon).to_radians();
        let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
    }

    /// `other` in metres east and north of this point, on the local tangent plane. Longitude
    /// differences are taken the short way round, across the antimeridian if need be.
    fn local_xy(self, other: GeoPoint) -> (f64, f64) {
        let dlon = (other.lon - self.lon + 540.0).rem_euclid(360.0) - 180.0;
        let x = dlon.to_radians() * EARTH_RADIUS_M * self.lat.to_radians().cos();
        let y = (other.lat - self.lat).to_radians() * EARTH_RADIUS_M;
        (x, y)
    }
}

/// A checked accuracy radius, metres (the phone's 68 % confidence circle).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Accuracy(f64);

impl Accuracy {
    /// An accuracy, checked.
    ///
    /// # Errors
    /// [`GeoError`] for NaN, infinity or a negative radius.
    pub fn new(metres: f64) -> Result<Self, GeoError> {
        if !metres.is_finite() {
            return Err(GeoError::NotFinite);
        }
        if metres < 0.0 {
            return Err(GeoError::Accuracy(metres));
        }
        Ok(Self(metres))
    }

    /// The radius, metres.
    pub fn metres(self) -> f64 {
        self.0
    }
}

/// A GPS fix: where the device says it is, and how sure it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fix {
    /// The reported position.
    pub point: GeoPoint,
    /// The reported accuracy radius.
    pub accuracy: Accuracy,
}

/// A geofence.
#[derive(Debug, Clone, PartialEq)]
pub enum Fence {
    /// Everything within `radius_m` of `centre`.
    Circle {
        /// The centre.
        centre: GeoPoint,
        /// The radius, metres.
        radius_m: f64,
    },
    /// A simple polygon (convex or not), its vertices in order, the last joined to the first.
    Polygon(Vec<GeoPoint>),
}

impl Fence {
    /// How far `point` is outside the fence, metres; 0 or negative inside (for a circle, minus
    /// the distance to the edge; for a polygon, 0).
    pub fn outside_m(&self, point: GeoPoint) -> f64 {
        match self {
            Fence::Circle { centre, radius_m } => centre.distance_m(point) - radius_m,
            Fence::Polygon(vertices) => {
                // The plane is centred on the fence, not on the point: a point on the far side
                // of the Earth must land far away, not wrap around the fence.
                let Some(origin) = centroid(vertices) else { return f64::INFINITY };
                let (px, py) = origin.local_xy(point);
                let plane: Vec<(f64, f64)> = vertices
                    .iter()
                    .map(|v| {
                        let (x, y) = origin.local_xy(*v);
                        (x - px, y - py)
                    })
                    .collect();
                if contains_origin(&plane) { 0.0 } else { distance_to_edges(&plane) }
            }
        }
    }

    /// How far the fix is outside the fence once its accuracy is granted, metres; 0 when the
    /// accuracy circle reaches the fence. A fix is given the benefit of its stated accuracy, so
    /// a poor accuracy must be refused separately (the rules' `max_accuracy_m`).
    pub fn outside_fix_m(&self, fix: Fix) -> f64 {
        (self.outside_m(fix.point) - fix.accuracy.metres()).max(0.0)
    }
}

/// The mean of the vertices, longitudes unwrapped around the first, so a fence across the
/// antimeridian is centred on it; the same whatever the vertices' order.
fn centroid(vertices: &[GeoPoint]) -> Option<GeoPoint> {
    let first = vertices.first()?;
    let n = vertices.len() as f64;
    let lat = vertices.iter().map(|v| v.lat).sum::<f64>() / n;
    let dlon = vertices.iter().map(|v| (v.lon - first.lon + 540.0).rem_euclid(360.0) - 180.0).sum::<f64>() / n;
    let lon = (first.lon + dlon + 540.0).rem_euclid(360.0) - 180.0;
    GeoPoint::new(lat.clamp(-90.0, 90.0), lon).ok()
}

/// Even-odd ray casting from the origin along +x: correct for concave polygons; a point exactly
/// on an edge may go either way, which the accuracy allowance makes immaterial.
fn contains_origin(plane: &[(f64, f64)]) -> bool {
    let mut inside = false;
    let mut previous = match plane.last() {
        Some(p) => *p,
        None => return false,
    };
    for &current in plane {
        let ((x1, y1), (x2, y2)) = (previous, current);
        if (y1 > 0.0) != (y2 > 0.0) {
            let x_at_zero = x1 + (0.0 - y1) * (x2 - x1) / (y2 - y1);
            if x_at_zero > 0.0 {
                inside = !inside;
            }
        }
        previous = current;
    }
    inside
}

/// The distance from the origin to the nearest edge.
fn distance_to_edges(plane: &[(f64, f64)]) -> f64 {
    let Some(&last) = plane.last() else { return f64::INFINITY };
    let mut previous = last;
    let mut best = f64::INFINITY;
    for &current in plane {
        best = best.min(segment_distance(previous, current));
        previous = current;
    }
    best
}

/// The distance from the origin to the segment `a`–`b`.
fn segment_distance((ax, ay): (f64, f64), (bx, by): (f64, f64)) -> f64 {
    let (dx, dy) = (bx - ax, by - ay);
    let len2 = dx * dx + dy * dy;
    let t = if len2 == 0.0 { 0.0 } else { (-(ax * dx + ay * dy) / len2).clamp(0.0, 1.0) };
    let (px, py) = (ax + t * dx, ay + t * dy);
    (px * px + py * py).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(lat: f64, lon: f64) -> GeoPoint {
        GeoPoint::new(lat, lon).expect("valid test point")
    }

    fn fix(lat: f64, lon: f64, accuracy: f64) -> Fix {
        Fix { point: p(lat, lon), accuracy: Accuracy::new(accuracy).expect("valid accuracy") }
    }

    /// Metres per degree of latitude on the mean sphere.
    const M_PER_DEG: f64 = EARTH_RADIUS_M * std::f64::consts::PI / 180.0;

    #[test]
    fn haversine_matches_known_distances() {
        let cases = [
            // (from, to, metres, tolerance)
            ((51.5007, -0.1246), (40.6892, -74.0445), 5_574_840.0, 2_000.0), // Big Ben to the Statue of Liberty
            ((0.0, 0.0), (0.0, 1.0), M_PER_DEG, 0.01),
            ((0.0, 179.9), (0.0, -179.9), 0.2 * M_PER_DEG, 0.01), // across the antimeridian
            ((90.0, 0.0), (-90.0, 0.0), 180.0 * M_PER_DEG, 0.01),
            ((31.2304, 121.4737), (31.2304, 121.4737), 0.0, 1e-9),
        ];
        for ((a_lat, a_lon), (b_lat, b_lon), metres, tolerance) in cases {
            let d = p(a_lat, a_lon).distance_m(p(b_lat, b_lon));
            assert!((d - metres).abs() <= tolerance, "{a_lat},{a_lon} -> {b_lat},{b_lon}: {d} vs {metres}");
        }
    }

    #[test]
    fn bad_positions_are_refused() {
        let cases = [
            (f64::NAN, 0.0, 1.0, GeoError::NotFinite),
            (0.0, f64::INFINITY, 1.0, GeoError::NotFinite),
            (90.5, 0.0, 1.0, GeoError::Latitude(90.5)),
            (-91.0, 0.0, 1.0, GeoError::Latitude(-91.0)),
            (0.0, 180.01, 1.0, GeoError::Longitude(180.01)),
            (0.0, 0.0, -1.0, GeoError::Accuracy(-1.0)),
            (0.0, 0.0, f64::NAN, GeoError::NotFinite),
        ];
        for (lat, lon, accuracy, error) in cases {
            let result = GeoPoint::new(lat, lon).and_then(|_| Accuracy::new(accuracy));
            assert_eq!(result.err(), Some(error), "{lat},{lon},{accuracy}");
        }
        assert!(GeoPoint::new(90.0, -180.0).is_ok() && Accuracy::new(0.0).is_ok());
    }

    #[test]
    fn circle_edges_with_and_without_accuracy() {
        let fence = Fence::Circle { centre: p(0.0, 0.0), radius_m: 100.0 };
        let north = |metres: f64| metres / M_PER_DEG;
        let cases = [
            // (metres north of the centre, accuracy, metres outside after accuracy)
            (0.0, 0.0, 0.0),
            (99.0, 0.0, 0.0),
            (101.0, 0.0, 1.0),
            (150.0, 0.0, 50.0),
            (150.0, 50.0, 0.0), // the accuracy circle touches the fence
            (150.0, 30.0, 20.0),
            (1_100.0, 10.0, 990.0),
        ];
        for (metres, accuracy, outside) in cases {
            let got = fence.outside_fix_m(fix(north(metres), 0.0, accuracy));
            assert!((got - outside).abs() < 0.01, "{metres} m, ±{accuracy}: {got} vs {outside}");
        }
    }

    /// A U-shaped (concave) site: two wings joined at the south, an open courtyard between them.
    fn u_shape() -> Fence {
        Fence::Polygon(vec![
            p(0.0, 0.0),
            p(0.0, 0.003),
            p(0.003, 0.003),
            p(0.003, 0.002),
            p(0.001, 0.002),
            p(0.001, 0.001),
            p(0.003, 0.001),
            p(0.003, 0.0),
        ])
    }

    #[test]
    fn concave_polygons() {
        let fence = u_shape();
        let deg = M_PER_DEG;
        let cases = [
            // (lat, lon, metres outside, tolerance)
            (0.0005, 0.0015, 0.0, 0.01),         // the base of the U
            (0.002, 0.0005, 0.0, 0.01),          // the west wing
            (0.002, 0.0025, 0.0, 0.01),          // the east wing
            (0.002, 0.0015, 0.0005 * deg, 0.5),  // the courtyard: outside, 0.0005° from each wing
            (0.0025, 0.0015, 0.0005 * deg, 0.5), // deeper in the courtyard
            (-0.001, 0.0015, 0.001 * deg, 0.5),  // south of the base
            (0.004, 0.0005, 0.001 * deg, 0.5),   // north of the west wing's tip
        ];
        for (lat, lon, outside, tolerance) in cases {
            let got = fence.outside_m(p(lat, lon));
            assert!((got - outside).abs() <= tolerance, "{lat},{lon}: {got} vs {outside}");
        }
    }

    #[test]
    fn polygons_across_the_antimeridian() {
        // A square spanning 179.999 E to 179.999 W.
        let fence =
            Fence::Polygon(vec![p(-0.001, 179.999), p(-0.001, -179.999), p(0.001, -179.999), p(0.001, 179.999)]);
        let cases = [
            (0.0, 180.0, true),
            (0.0, -180.0, true),
            (0.0, 179.9995, true),
            (0.0, -179.9995, true),
            (0.0, 179.99, false),
            (0.0, -179.99, false),
            (0.0, 0.0, false), // the other side of the world, which a naive longitude test would call inside
        ];
        for (lat, lon, inside) in cases {
            assert_eq!(fence.outside_m(p(lat, lon)) <= 0.0, inside, "{lat},{lon}");
        }
        // The circle likewise: a centre at 179.9995 E reaches points at 179.9995 W.
        let circle = Fence::Circle { centre: p(0.0, 179.9995), radius_m: 150.0 };
        assert!(circle.outside_m(p(0.0, -179.9995)) < 0.0);
    }

    /// A star-shaped polygon (simple, often concave) around `(lat, lon)`: vertices at sorted
    /// angles and random radii, up to about 1 km out.
    fn star(lat: f64, lon: f64, spokes: &[(f64, f64)]) -> Vec<GeoPoint> {
        let mut spokes = spokes.to_vec();
        spokes.sort_by(|a, b| a.0.total_cmp(&b.0));
        spokes
            .iter()
            .map(|(angle, r)| {
                let wrapped = (lon + r * angle.cos() / lat.to_radians().cos() + 540.0).rem_euclid(360.0) - 180.0;
                p(lat + r * angle.sin(), wrapped)
            })
            .collect()
    }

    proptest::proptest! {
        /// Moving a fence and a point together east or west, across the antimeridian or not,
        /// changes nothing; nor does reversing or rotating the polygon's vertex order.
        #[test]
        fn polygons_are_invariant_under_longitude_shifts_and_vertex_order(
            lat in -60.0f64..60.0,
            lon in -180.0f64..180.0,
            spokes in proptest::collection::vec((0.0f64..std::f64::consts::TAU, 0.001f64..0.01), 3..9),
            (dx, dy) in (-0.012f64..0.012, -0.012f64..0.012),
            rotate in 0usize..8,
        ) {
            let reference = Fence::Polygon(star(lat, 0.0, &spokes));
            let point_at = |lon: f64| p(lat + dy, (lon + dx / lat.to_radians().cos() + 540.0).rem_euclid(360.0) - 180.0);
            let expected = reference.outside_m(point_at(0.0));
            let mut vertices = star(lat, lon, &spokes);
            let shifted = Fence::Polygon(vertices.clone()).outside_m(point_at(lon));
            proptest::prop_assert!((shifted - expected).abs() < 1e-2, "{shifted} vs {expected}");
            vertices.reverse();
            let len = vertices.len();
            vertices.rotate_left(rotate % len);
            let reordered = Fence::Polygon(vertices).outside_m(point_at(lon));
            proptest::prop_assert!((reordered - expected).abs() < 1e-2, "{reordered} vs {expected}");
        }

        /// A circle's edge is where the great-circle distance says, wherever it is.
        #[test]
        fn circles_measure_from_their_centre(
            lat in -80.0f64..80.0,
            lon in -180.0f64..180.0,
            radius in 1.0f64..5_000.0,
            (dlat, dlon) in (-0.1f64..0.1, -0.1f64..0.1),
        ) {
            let centre = p(lat, lon);
            let point = p(lat + dlat, (lon + dlon + 540.0).rem_euclid(360.0) - 180.0);
            let fence = Fence::Circle { centre, radius_m: radius };
            proptest::prop_assert!((fence.outside_m(point) - (centre.distance_m(point) - radius)).abs() < 1e-6);
            proptest::prop_assert!(fence.outside_m(centre) < 0.0);
        }
    }
}
