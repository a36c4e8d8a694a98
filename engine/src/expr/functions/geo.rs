//! Geospatial functions, for geofencing moving assets: CreatePoint,
//! CreateLineString, CreatePolygon, ST_DISTANCE, ST_WITHIN, ST_INTERSECTS,
//! ST_OVERLAPS.
//!
//! **Representation.** A geography is ASA's GeoJSON record: an Arrow
//! struct `{type: Utf8, coordinates: List<Float64>}` for a point (longitude
//! first, as GeoJSON and ASA's examples have it), `List<List<Float64>>` for
//! a line string and `List<List<List<Float64>>>` (one ring) for a
//! polygon. The Create functions make such records, so `.type` works on
//! them and outputs write them as JSON objects. The ST_ functions also
//! take GeoJSON records read from JSON input (whatever their number
//! types), GeoJSON text (`{"type":"Point","coordinates":[8.5,47.4]}`) and
//! WKT text (`POINT(8.5 47.4)`, `LINESTRING(...)`, `POLYGON((...))`). A
//! value that is none of these, a latitude outside [-90, 90], a line of
//! fewer than 2 points or a polygon of fewer than 3 corners, with holes or
//! larger than a hemisphere is an evaluation error.
//!
//! **Semantics**, following SQL Server's `geography`, on which ASA's are
//! modelled:
//! - ST_DISTANCE between two points is the geodesic on the WGS84
//!   ellipsoid (Vincenty's formula), in meters: ASA's example,
//!   (-5, -5) to (0, 0), is 784028.74 m; on a sphere it would be 785768.
//!   Between other shapes it is 0 when they intersect (ASA: "if used with
//!   polygons will return 0") and otherwise the shortest distance between
//!   a vertex of one and an edge of the other on a sphere of radius
//!   6371008.8 m (an iotql interpretation).
//! - Edges are great-circle arcs. A polygon's inside is on the left of its
//!   ring (counterclockwise seen from above); a clockwise ring is, as ASA
//!   documents, the whole globe minus the area it encloses.
//! - ST_WITHIN(a, b) is 1 when a point, line string or polygon `a` lies
//!   inside the polygon `b` (0 when `b` is not a polygon);
//!   ST_INTERSECTS(a, b) is 1 when any two shapes share a point, touching
//!   included; ST_OVERLAPS(a, b) is 1 when two polygons share area but
//!   neither lies within the other (0 for other shapes). Results are
//!   bigint 1 / 0, NULL when an argument is NULL. Points closer than about
//!   6 mm are the same point.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Float64Builder, Int64Array, ListBuilder, StringArray,
    StructArray,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Fields, Float64Type, Int64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF};

use super::{AsaFunction, downcast, is_text, run, type_error, udf, value_error};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum GeoFunction {
    CreatePoint,
    CreateLineString,
    CreatePolygon,
    Distance,
    Within,
    Intersects,
    Overlaps,
}

use GeoFunction as G;

pub(super) fn udfs() -> Vec<ScalarUDF> {
    [
        G::CreatePoint,
        G::CreateLineString,
        G::CreatePolygon,
        G::Distance,
        G::Within,
        G::Intersects,
        G::Overlaps,
    ]
    .into_iter()
    .map(udf)
    .collect()
}

impl GeoFunction {
    fn asa(self) -> &'static str {
        match self {
            G::CreatePoint => "CreatePoint",
            G::CreateLineString => "CreateLineString",
            G::CreatePolygon => "CreatePolygon",
            G::Distance => "ST_DISTANCE",
            G::Within => "ST_WITHIN",
            G::Intersects => "ST_INTERSECTS",
            G::Overlaps => "ST_OVERLAPS",
        }
    }
}

/// `List<Float64>` nested `depth` times.
fn coordinates_type(depth: usize) -> DataType {
    (0..depth).fold(DataType::Float64, |t, _| DataType::new_list(t, true))
}

/// The record type of a geography whose coordinates nest `depth` lists.
fn geography_type(depth: usize) -> DataType {
    DataType::Struct(Fields::from(vec![
        Field::new("type", DataType::Utf8, true),
        Field::new("coordinates", coordinates_type(depth), true),
    ]))
}

fn geography_arg(function: &str, t: &DataType) -> Result<DataType> {
    match t {
        DataType::Struct(_) | DataType::Utf8 | DataType::Null => Ok(t.clone()),
        t if is_text(t) => Ok(DataType::Utf8),
        other => Err(type_error(format!(
            "{function} expects a geography (a GeoJSON record, GeoJSON or WKT text), not {}",
            super::asa_type_name(other)
        ))),
    }
}

impl AsaFunction for GeoFunction {
    fn name(&self) -> &'static str {
        match self {
            G::CreatePoint => "asa_createpoint",
            G::CreateLineString => "asa_createlinestring",
            G::CreatePolygon => "asa_createpolygon",
            G::Distance => "asa_st_distance",
            G::Within => "asa_st_within",
            G::Intersects => "asa_st_intersects",
            G::Overlaps => "asa_st_overlaps",
        }
    }

    fn coerce(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        let f = self.asa();
        match self {
            G::CreatePoint => {
                if types.len() != 2 {
                    return Err(type_error("CreatePoint takes a latitude and a longitude"));
                }
                types
                    .iter()
                    .map(|t| {
                        if t.is_numeric() || t.is_null() || is_text(t) {
                            Ok(DataType::Float64)
                        } else {
                            Err(type_error(format!(
                                "CreatePoint expects numbers, not {}",
                                super::asa_type_name(t)
                            )))
                        }
                    })
                    .collect()
            }
            _ => types.iter().map(|t| geography_arg(f, t)).collect(),
        }
    }

    fn return_type(&self, _: &[DataType], _: &[Option<&ScalarValue>]) -> Result<DataType> {
        Ok(match self {
            G::CreatePoint => geography_type(1),
            G::CreateLineString => geography_type(2),
            G::CreatePolygon => geography_type(3),
            G::Distance => DataType::Float64,
            G::Within | G::Intersects | G::Overlaps => DataType::Int64,
        })
    }

    fn invoke(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let f = *self;
        match f {
            G::CreatePoint => run(&args, create_point),
            G::CreateLineString | G::CreatePolygon => run(&args, |a| create_shape(f, a)),
            G::Distance | G::Within | G::Intersects | G::Overlaps => {
                let n = args.number_rows;
                let x = Geographies::of(&args.args[0], f)?;
                let y = Geographies::of(&args.args[1], f)?;
                let rows = if x.is_scalar() && y.is_scalar() { 1 } else { n };
                let out: ArrayRef = if f == G::Distance {
                    Arc::new(
                        (0..rows)
                            .map(|i| Some(distance(x.get(i)?, y.get(i)?)))
                            .collect::<Float64Array>(),
                    )
                } else {
                    Arc::new(
                        (0..rows)
                            .map(|i| {
                                let (a, b) = (x.get(i)?, y.get(i)?);
                                let yes = match f {
                                    G::Within => within(a, b),
                                    G::Intersects => intersects(a, b),
                                    _ => overlaps(a, b),
                                };
                                Some(i64::from(yes))
                            })
                            .collect::<Int64Array>(),
                    )
                };
                if x.is_scalar() && y.is_scalar() {
                    Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
                } else {
                    Ok(ColumnarValue::Array(out))
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Building geography records

/// A builder of `[longitude, latitude]` positions.
fn positions() -> ListBuilder<Float64Builder> {
    ListBuilder::new(Float64Builder::new())
}

fn push_position(b: &mut ListBuilder<Float64Builder>, p: LonLat) {
    b.values().append_value(p.lon);
    b.values().append_value(p.lat);
    b.append(true);
}

fn record(kind: &str, coordinates: ArrayRef, valid: Vec<bool>) -> ArrayRef {
    let n = valid.len();
    let types: ArrayRef = Arc::new(StringArray::from(
        valid.iter().map(|&v| v.then_some(kind)).collect::<Vec<_>>(),
    ));
    let fields = Fields::from(vec![
        Field::new("type", DataType::Utf8, true),
        Field::new("coordinates", coordinates.data_type().clone(), true),
    ]);
    let nulls = NullBuffer::from(valid);
    debug_assert_eq!(coordinates.len(), n);
    Arc::new(StructArray::new(
        fields,
        vec![types, coordinates],
        Some(nulls),
    ))
}

fn create_point(a: &[ArrayRef]) -> Result<ArrayRef> {
    let (lat, lon) = (
        downcast::<Float64Array>(&a[0], "CreatePoint")?,
        downcast::<Float64Array>(&a[1], "CreatePoint")?,
    );
    let mut coordinates = positions();
    let mut valid = Vec::with_capacity(lat.len());
    for (lat, lon) in lat.iter().zip(lon.iter()) {
        match (lat, lon) {
            (Some(lat), Some(lon)) => {
                push_position(&mut coordinates, LonLat::new(lon, lat)?);
                valid.push(true);
            }
            _ => {
                coordinates.append_null();
                valid.push(false);
            }
        }
    }
    Ok(record("Point", Arc::new(coordinates.finish()), valid))
}

/// CreateLineString / CreatePolygon from point arguments.
fn create_shape(f: GeoFunction, a: &[ArrayRef]) -> Result<ArrayRef> {
    let n = a.first().map_or(0, |x| x.len());
    let args = a
        .iter()
        .map(|x| Geographies::rows(x, f))
        .collect::<Result<Vec<_>>>()?;
    let mut rows: Vec<Option<Vec<LonLat>>> = Vec::with_capacity(n);
    for i in 0..n {
        let mut points = Vec::with_capacity(args.len());
        for g in &args {
            match g.get(i) {
                None => break,
                Some(Geo::Point(p)) => points.push(*p),
                Some(_) => {
                    return Err(value_error(format!(
                        "{} takes points (CreatePoint)",
                        f.asa()
                    )));
                }
            }
        }
        if points.len() < args.len() {
            rows.push(None);
            continue;
        }
        if f == G::CreatePolygon {
            // Validates it (corners, hemisphere); the ring is written closed.
            Polygon::new(points.clone())?;
            let (first, last) = (points[0], points[points.len() - 1]);
            if !same(first.vector(), last.vector()) {
                points.push(first);
            }
        }
        rows.push(Some(points));
    }
    let valid: Vec<bool> = rows.iter().map(Option::is_some).collect();
    let mut line = ListBuilder::new(positions());
    let mut ring = ListBuilder::new(ListBuilder::new(positions()));
    for row in &rows {
        match (f, row) {
            (G::CreatePolygon, Some(points)) => {
                for &p in points {
                    push_position(ring.values().values(), p);
                }
                ring.values().append(true);
                ring.append(true);
            }
            (G::CreatePolygon, None) => ring.append_null(),
            (_, Some(points)) => {
                for &p in points {
                    push_position(line.values(), p);
                }
                line.append(true);
            }
            (_, None) => line.append_null(),
        }
    }
    Ok(if f == G::CreatePolygon {
        record("Polygon", Arc::new(ring.finish()), valid)
    } else {
        record("LineString", Arc::new(line.finish()), valid)
    })
}

// ---------------------------------------------------------------------------
// Reading geographies

/// A position in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
struct LonLat {
    lon: f64,
    lat: f64,
}

impl LonLat {
    fn new(lon: f64, lat: f64) -> Result<LonLat> {
        if !lon.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err(value_error(format!(
                "({lat}, {lon}) is not a position: latitudes are within [-90, 90]"
            )));
        }
        Ok(LonLat { lon, lat })
    }

    /// The unit vector of the position.
    fn vector(&self) -> V {
        let (lat, lon) = (self.lat.to_radians(), self.lon.to_radians());
        [lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()]
    }
}

#[derive(Debug)]
enum Geo {
    Point(LonLat),
    Line(Vec<V>),
    Polygon(Polygon),
}

/// Nested GeoJSON coordinates.
#[derive(Debug)]
enum Coords {
    Number(f64),
    List(Vec<Coords>),
}

fn malformed(what: impl std::fmt::Display) -> datafusion::common::DataFusionError {
    value_error(format!("not a geography: {what}"))
}

impl Coords {
    fn position(&self) -> Result<LonLat> {
        match self {
            Coords::List(xs) => match xs.as_slice() {
                [Coords::Number(lon), Coords::Number(lat), ..] => LonLat::new(*lon, *lat),
                _ => Err(malformed("a position is [longitude, latitude]")),
            },
            Coords::Number(_) => Err(malformed("a position is [longitude, latitude]")),
        }
    }

    fn positions(&self) -> Result<Vec<LonLat>> {
        match self {
            Coords::List(xs) => xs.iter().map(Coords::position).collect(),
            Coords::Number(_) => Err(malformed("expected a list of positions")),
        }
    }

    fn is_position(&self) -> bool {
        matches!(self, Coords::List(xs) if matches!(xs.first(), Some(Coords::Number(_))))
    }
}

fn geo_of(kind: &str, coords: &Coords) -> Result<Geo> {
    if kind.eq_ignore_ascii_case("Point") {
        Ok(Geo::Point(coords.position()?))
    } else if kind.eq_ignore_ascii_case("LineString") {
        let points = coords.positions()?;
        if points.len() < 2 {
            return Err(malformed("a line string has at least 2 points"));
        }
        Ok(Geo::Line(points.iter().map(LonLat::vector).collect()))
    } else if kind.eq_ignore_ascii_case("Polygon") {
        let Coords::List(rings) = coords else {
            return Err(malformed("a polygon's coordinates are a list of rings"));
        };
        // ASA's own examples sometimes give the ring without the list of
        // rings around it.
        if rings.first().is_some_and(Coords::is_position) {
            return Ok(Geo::Polygon(Polygon::new(coords.positions()?)?));
        }
        match rings.as_slice() {
            [ring] => Ok(Geo::Polygon(Polygon::new(ring.positions()?)?)),
            [] => Err(malformed("a polygon without a ring")),
            _ => Err(malformed("ASA polygons cannot have holes")),
        }
    } else {
        Err(malformed(format!(
            "the type `{kind}` (Point, LineString or Polygon expected)"
        )))
    }
}

fn coords_of_json(v: &serde_json::Value) -> Result<Coords> {
    match v {
        serde_json::Value::Number(n) => n
            .as_f64()
            .map(Coords::Number)
            .ok_or_else(|| malformed("a coordinate is not a number")),
        serde_json::Value::Array(xs) => Ok(Coords::List(
            xs.iter().map(coords_of_json).collect::<Result<_>>()?,
        )),
        _ => Err(malformed("coordinates are numbers")),
    }
}

fn geo_of_text(text: &str) -> Result<Geo> {
    let t = text.trim();
    if t.starts_with('{') {
        let v: serde_json::Value =
            serde_json::from_str(t).map_err(|e| malformed(format!("`{t}`: {e}")))?;
        let kind = v
            .get("type")
            .and_then(|k| k.as_str())
            .ok_or_else(|| malformed(format!("`{t}` has no type")))?;
        let coords = v
            .get("coordinates")
            .ok_or_else(|| malformed(format!("`{t}` has no coordinates")))?;
        return geo_of(kind, &coords_of_json(coords)?);
    }
    geo_of_wkt(t).ok_or_else(|| malformed(format!("`{t}` is neither GeoJSON nor WKT")))?
}

/// `POINT (x y)`, `LINESTRING (x y, ...)`, `POLYGON ((x y, ...))`.
fn geo_of_wkt(t: &str) -> Option<Result<Geo>> {
    let open = t.find('(')?;
    let kind = t[..open].trim();
    let body = t[open..].trim();
    let inner = body.strip_prefix('(')?.strip_suffix(')')?;
    let position = |p: &str| -> Option<Coords> {
        let numbers: Option<Vec<Coords>> = p
            .split_whitespace()
            .map(|x| x.parse::<f64>().ok().map(Coords::Number))
            .collect();
        numbers.filter(|n| n.len() >= 2).map(Coords::List)
    };
    let positions = |s: &str| -> Option<Coords> {
        s.split(',')
            .map(position)
            .collect::<Option<Vec<_>>>()
            .map(Coords::List)
    };
    let coords = match kind.to_ascii_uppercase().as_str() {
        "POINT" => position(inner)?,
        "LINESTRING" => positions(inner)?,
        "POLYGON" => {
            let mut rings = Vec::new();
            for ring in inner.split(')') {
                let ring = ring.trim().trim_start_matches(',').trim();
                if ring.is_empty() {
                    continue;
                }
                rings.push(positions(ring.strip_prefix('(')?)?);
            }
            Coords::List(rings)
        }
        _ => return None,
    };
    let kind = match kind.to_ascii_uppercase().as_str() {
        "POINT" => "Point",
        "LINESTRING" => "LineString",
        _ => "Polygon",
    };
    Some(geo_of(kind, &coords))
}

/// The coordinates at row `i` of a (list of ...) number array.
fn coords_at(a: &dyn Array, i: usize) -> Result<Coords> {
    if a.is_null(i) {
        return Err(malformed("a coordinate is NULL"));
    }
    let list = |values: ArrayRef| -> Result<Coords> {
        Ok(Coords::List(
            (0..values.len())
                .map(|j| coords_at(values.as_ref(), j))
                .collect::<Result<_>>()?,
        ))
    };
    match a.data_type() {
        DataType::List(_) => list(a.as_list::<i32>().value(i)),
        DataType::LargeList(_) => list(a.as_list::<i64>().value(i)),
        DataType::FixedSizeList(..) => list(a.as_fixed_size_list().value(i)),
        DataType::Float64 => Ok(Coords::Number(a.as_primitive::<Float64Type>().value(i))),
        DataType::Int64 => Ok(Coords::Number(a.as_primitive::<Int64Type>().value(i) as f64)),
        t if t.is_numeric() => {
            match ScalarValue::try_from_array(a, i)?.cast_to(&DataType::Float64)? {
                ScalarValue::Float64(Some(x)) => Ok(Coords::Number(x)),
                _ => Err(malformed("a coordinate is not a number")),
            }
        }
        t => Err(malformed(format!("coordinates of type {t}"))),
    }
}

fn geo_of_record(r: &StructArray, i: usize) -> Result<Geo> {
    let field = |name: &str| {
        r.fields()
            .iter()
            .position(|f| f.name().eq_ignore_ascii_case(name))
            .map(|k| r.column(k))
    };
    let (Some(kind), Some(coords)) = (field("type"), field("coordinates")) else {
        return Err(malformed("a record without `type` and `coordinates`"));
    };
    let kind = match kind.data_type() {
        DataType::Utf8 => kind.as_string::<i32>(),
        _ => return Err(malformed("`type` is not text")),
    };
    if kind.is_null(i) {
        return Err(malformed("`type` is NULL"));
    }
    geo_of(kind.value(i), &coords_at(coords.as_ref(), i)?)
}

/// The geographies of one argument: parsed once when it is a constant.
enum Geographies {
    One(Option<Geo>),
    Rows(Vec<Option<Geo>>),
}

impl Geographies {
    fn of(v: &ColumnarValue, f: GeoFunction) -> Result<Geographies> {
        match v {
            ColumnarValue::Scalar(s) => {
                let a = s.to_array_of_size(1)?;
                Ok(Geographies::One(
                    Self::rows(&a, f)?.into_rows().into_iter().next().flatten(),
                ))
            }
            ColumnarValue::Array(a) => Self::rows(a, f),
        }
    }

    fn rows(a: &ArrayRef, f: GeoFunction) -> Result<Geographies> {
        let with_function = |e: datafusion::common::DataFusionError| {
            let message = e.strip_backtrace();
            let message = message.trim_start_matches("External error: ");
            value_error(format!("{}: {message}", f.asa()))
        };
        let rows = match a.data_type() {
            DataType::Null => (0..a.len()).map(|_| None).collect(),
            DataType::Utf8 => a
                .as_string::<i32>()
                .iter()
                .map(|s| s.map(geo_of_text).transpose())
                .collect::<Result<_>>()
                .map_err(with_function)?,
            DataType::Struct(_) => {
                let r = a.as_struct();
                (0..r.len())
                    .map(|i| r.is_valid(i).then(|| geo_of_record(r, i)).transpose())
                    .collect::<Result<_>>()
                    .map_err(with_function)?
            }
            t => {
                return Err(type_error(format!(
                    "{} cannot read {t} as a geography",
                    f.asa()
                )));
            }
        };
        Ok(Geographies::Rows(rows))
    }

    fn into_rows(self) -> Vec<Option<Geo>> {
        match self {
            Geographies::One(g) => vec![g],
            Geographies::Rows(r) => r,
        }
    }

    fn is_scalar(&self) -> bool {
        matches!(self, Geographies::One(_))
    }

    fn get(&self, i: usize) -> Option<&Geo> {
        match self {
            Geographies::One(g) => g.as_ref(),
            Geographies::Rows(r) => r.get(i).and_then(Option::as_ref),
        }
    }
}

// ---------------------------------------------------------------------------
// Spherical geometry on unit vectors

type V = [f64; 3];

fn dot(a: V, b: V) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: V, b: V) -> V {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn norm(a: V) -> f64 {
    dot(a, a).sqrt()
}

fn scale(a: V, k: f64) -> V {
    [a[0] * k, a[1] * k, a[2] * k]
}

fn add(a: V, b: V) -> V {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

/// About 6 mm on the Earth: closer points are the same point.
const SAME: f64 = 1e-9;
/// Orientation determinants below this are "on the line".
const FLAT: f64 = 1e-13;

fn same(a: V, b: V) -> bool {
    norm([a[0] - b[0], a[1] - b[1], a[2] - b[2]]) < SAME
}

/// The sign of `c` relative to the great circle from `a` to `b`: positive
/// on its left (seen from outside the sphere), 0 on it.
fn side(a: V, b: V, c: V) -> i8 {
    let d = dot(cross(a, b), c);
    if d > FLAT {
        1
    } else if d < -FLAT {
        -1
    } else {
        0
    }
}

/// Whether `p` lies on the arc from `a` to `b` (the shorter one).
fn on_arc(p: V, a: V, b: V) -> bool {
    if same(p, a) || same(p, b) {
        return true;
    }
    let n = cross(a, b);
    if norm(n) < FLAT {
        return false;
    }
    side(a, b, p) == 0 && dot(cross(a, p), n) > 0.0 && dot(cross(p, b), n) > 0.0
}

/// Whether arcs `ab` and `cd` cross at a point inside both (S2's test).
fn cross_properly(a: V, b: V, c: V, d: V) -> bool {
    let acb = -side(a, b, c);
    let bda = side(a, b, d);
    if acb == 0 || bda != acb {
        return false;
    }
    let cbd = -side(c, d, b);
    if cbd != acb {
        return false;
    }
    side(c, d, a) == acb
}

/// Whether arcs `ab` and `cd` share a point, touching included.
fn arcs_meet(a: V, b: V, c: V, d: V) -> bool {
    cross_properly(a, b, c, d)
        || on_arc(c, a, b)
        || on_arc(d, a, b)
        || on_arc(a, c, d)
        || on_arc(b, c, d)
}

fn angle(a: V, b: V) -> f64 {
    norm(cross(a, b)).atan2(dot(a, b))
}

/// The angle from `p` to the nearest point of the arc `ab`.
fn angle_to_arc(p: V, a: V, b: V) -> f64 {
    let n = cross(a, b);
    let len = norm(n);
    if len > FLAT {
        let n = scale(n, 1.0 / len);
        // The foot of `p` on the great circle, if it falls inside the arc.
        let foot = add(p, scale(n, -dot(p, n)));
        if norm(foot) > FLAT && dot(cross(a, foot), n) > 0.0 && dot(cross(foot, b), n) > 0.0 {
            return dot(p, n).abs().asin();
        }
    }
    angle(p, a).min(angle(p, b))
}

/// A polygon's ring, ready for containment tests: its corners as unit
/// vectors and their gnomonic projection around the ring's centre, in
/// which arcs are straight segments.
#[derive(Debug)]
struct Polygon {
    corners: Vec<V>,
    center: V,
    east: V,
    north: V,
    projected: Vec<(f64, f64)>,
    /// Counterclockwise: the inside is the area the ring encloses;
    /// clockwise: everything else.
    counterclockwise: bool,
}

impl Polygon {
    fn new(ring: Vec<LonLat>) -> Result<Polygon> {
        let mut corners: Vec<V> = ring.iter().map(LonLat::vector).collect();
        if corners.len() > 1
            && corners
                .first()
                .zip(corners.last())
                .is_some_and(|(a, b)| same(*a, *b))
        {
            corners.pop();
        }
        corners.dedup_by(|a, b| same(*a, *b));
        if corners.len() < 3 {
            return Err(malformed("a polygon has at least 3 corners"));
        }
        let sum = corners.iter().fold([0.0; 3], |s, &c| add(s, c));
        let length = norm(sum);
        if length < FLAT {
            return Err(malformed("a polygon larger than a hemisphere"));
        }
        let center = scale(sum, 1.0 / length);
        let pole = if center[2].abs() < 0.9 {
            [0.0, 0.0, 1.0]
        } else {
            [1.0, 0.0, 0.0]
        };
        let e = cross(pole, center);
        let east = scale(e, 1.0 / norm(e));
        let north = cross(center, east);
        let mut p = Polygon {
            corners,
            center,
            east,
            north,
            projected: Vec::new(),
            counterclockwise: true,
        };
        let projected = p
            .corners
            .iter()
            .map(|&c| p.project(c))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| malformed("a polygon larger than a hemisphere"))?;
        let area2: f64 = (0..projected.len())
            .map(|i| {
                let (x1, y1) = projected[i];
                let (x2, y2) = projected[(i + 1) % projected.len()];
                x1 * y2 - x2 * y1
            })
            .sum();
        p.projected = projected;
        p.counterclockwise = area2 > 0.0;
        Ok(p)
    }

    fn project(&self, v: V) -> Option<(f64, f64)> {
        let d = dot(v, self.center);
        (d > 1e-6).then(|| (dot(v, self.east) / d, dot(v, self.north) / d))
    }

    fn edges(&self) -> impl Iterator<Item = (V, V)> + '_ {
        let n = self.corners.len();
        (0..n).map(move |i| (self.corners[i], self.corners[(i + 1) % n]))
    }

    fn on_boundary(&self, p: V) -> bool {
        self.edges().any(|(a, b)| on_arc(p, a, b))
    }

    /// Whether `p` is inside (the boundary counts as inside).
    fn contains(&self, p: V) -> bool {
        self.on_boundary(p) || self.inside(p)
    }

    /// Whether `p` is inside and not on the boundary.
    fn strictly_contains(&self, p: V) -> bool {
        !self.on_boundary(p) && self.inside(p)
    }

    /// Whether `p`, not on the boundary, is inside.
    fn inside(&self, p: V) -> bool {
        let enclosed = match self.project(p) {
            Some((x, y)) => {
                // Crossing number in the projection.
                let mut inside = false;
                let n = self.projected.len();
                for i in 0..n {
                    let (x1, y1) = self.projected[i];
                    let (x2, y2) = self.projected[(i + 1) % n];
                    if (y1 > y) != (y2 > y) && x < x1 + (y - y1) * (x2 - x1) / (y2 - y1) {
                        inside = !inside;
                    }
                }
                inside
            }
            None => false,
        };
        enclosed == self.counterclockwise
    }
}

// ---------------------------------------------------------------------------
// Predicates and distance

fn vertices(g: &Geo) -> Vec<V> {
    match g {
        Geo::Point(p) => vec![p.vector()],
        Geo::Line(points) => points.clone(),
        Geo::Polygon(p) => p.corners.clone(),
    }
}

fn segments(g: &Geo) -> Vec<(V, V)> {
    match g {
        Geo::Point(_) => Vec::new(),
        Geo::Line(points) => points.windows(2).map(|w| (w[0], w[1])).collect(),
        Geo::Polygon(p) => p.edges().collect(),
    }
}

fn any_edges_meet(a: &Geo, b: &Geo) -> bool {
    let sb = segments(b);
    segments(a)
        .iter()
        .any(|&(p, q)| sb.iter().any(|&(r, s)| arcs_meet(p, q, r, s)))
}

fn any_edges_cross(a: &Geo, b: &Geo) -> bool {
    let sb = segments(b);
    segments(a)
        .iter()
        .any(|&(p, q)| sb.iter().any(|&(r, s)| cross_properly(p, q, r, s)))
}

fn intersects(a: &Geo, b: &Geo) -> bool {
    match (a, b) {
        (Geo::Point(p), Geo::Point(q)) => same(p.vector(), q.vector()),
        (Geo::Point(p), other) | (other, Geo::Point(p)) => {
            let v = p.vector();
            match other {
                Geo::Polygon(poly) => poly.contains(v),
                _ => segments(other).iter().any(|&(x, y)| on_arc(v, x, y)),
            }
        }
        _ => {
            let inside = |x: &Geo, y: &Geo| match y {
                Geo::Polygon(poly) => vertices(x).iter().any(|&v| poly.contains(v)),
                _ => false,
            };
            any_edges_meet(a, b) || inside(a, b) || inside(b, a)
        }
    }
}

fn within(a: &Geo, b: &Geo) -> bool {
    let Geo::Polygon(outer) = b else {
        return false;
    };
    let all_inside = vertices(a).iter().all(|&v| outer.contains(v));
    match a {
        Geo::Point(_) => all_inside,
        Geo::Line(_) => all_inside && !any_edges_cross(a, b),
        Geo::Polygon(inner) => {
            all_inside
                && !any_edges_cross(a, b)
                && !outer.corners.iter().any(|&v| inner.strictly_contains(v))
        }
    }
}

fn overlaps(a: &Geo, b: &Geo) -> bool {
    let (Geo::Polygon(x), Geo::Polygon(y)) = (a, b) else {
        return false;
    };
    let share_area = any_edges_cross(a, b)
        || x.corners.iter().any(|&v| y.strictly_contains(v))
        || y.corners.iter().any(|&v| x.strictly_contains(v));
    share_area && !within(a, b) && !within(b, a)
}

/// The mean radius of the Earth (IUGG), for distances between shapes.
const EARTH_RADIUS: f64 = 6_371_008.8;

fn distance(a: &Geo, b: &Geo) -> f64 {
    if let (Geo::Point(p), Geo::Point(q)) = (a, b) {
        return geodesic(*p, *q);
    }
    if intersects(a, b) {
        return 0.0;
    }
    let nearest = |x: &Geo, y: &Geo| {
        let edges = segments(y);
        vertices(x)
            .iter()
            .map(|&v| match edges.as_slice() {
                [] => vertices(y)
                    .iter()
                    .map(|&w| angle(v, w))
                    .fold(f64::INFINITY, f64::min),
                edges => edges
                    .iter()
                    .map(|&(p, q)| angle_to_arc(v, p, q))
                    .fold(f64::INFINITY, f64::min),
            })
            .fold(f64::INFINITY, f64::min)
    };
    nearest(a, b).min(nearest(b, a)) * EARTH_RADIUS
}

/// The geodesic distance in meters on the WGS84 ellipsoid (Vincenty's
/// inverse formula); on the mean sphere for the nearly antipodal points
/// where it does not converge.
fn geodesic(p: LonLat, q: LonLat) -> f64 {
    const A: f64 = 6_378_137.0;
    const F: f64 = 1.0 / 298.257_223_563;
    const B: f64 = A * (1.0 - F);
    let l = (q.lon - p.lon).to_radians();
    let u1 = ((1.0 - F) * p.lat.to_radians().tan()).atan();
    let u2 = ((1.0 - F) * q.lat.to_radians().tan()).atan();
    let (sin_u1, cos_u1) = u1.sin_cos();
    let (sin_u2, cos_u2) = u2.sin_cos();
    let mut lambda = l;
    for _ in 0..200 {
        let (sin_l, cos_l) = lambda.sin_cos();
        let sin_sigma =
            ((cos_u2 * sin_l).powi(2) + (cos_u1 * sin_u2 - sin_u1 * cos_u2 * cos_l).powi(2)).sqrt();
        if sin_sigma == 0.0 {
            return 0.0;
        }
        let cos_sigma = sin_u1 * sin_u2 + cos_u1 * cos_u2 * cos_l;
        let sigma = sin_sigma.atan2(cos_sigma);
        let sin_alpha = cos_u1 * cos_u2 * sin_l / sin_sigma;
        let cos2_alpha = 1.0 - sin_alpha * sin_alpha;
        let cos_2sm = if cos2_alpha == 0.0 {
            0.0
        } else {
            cos_sigma - 2.0 * sin_u1 * sin_u2 / cos2_alpha
        };
        let c = F / 16.0 * cos2_alpha * (4.0 + F * (4.0 - 3.0 * cos2_alpha));
        let previous = lambda;
        lambda = l
            + (1.0 - c)
                * F
                * sin_alpha
                * (sigma
                    + c * sin_sigma * (cos_2sm + c * cos_sigma * (-1.0 + 2.0 * cos_2sm * cos_2sm)));
        if (lambda - previous).abs() < 1e-12 {
            let u2 = cos2_alpha * (A * A - B * B) / (B * B);
            let big_a = 1.0 + u2 / 16384.0 * (4096.0 + u2 * (-768.0 + u2 * (320.0 - 175.0 * u2)));
            let big_b = u2 / 1024.0 * (256.0 + u2 * (-128.0 + u2 * (74.0 - 47.0 * u2)));
            let delta = big_b
                * sin_sigma
                * (cos_2sm
                    + big_b / 4.0
                        * (cos_sigma * (-1.0 + 2.0 * cos_2sm * cos_2sm)
                            - big_b / 6.0
                                * cos_2sm
                                * (-3.0 + 4.0 * sin_sigma * sin_sigma)
                                * (-3.0 + 4.0 * cos_2sm * cos_2sm)));
            return B * big_a * (sigma - delta);
        }
    }
    angle(p.vector(), q.vector()) * EARTH_RADIUS
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, Float64Array, StringArray};

    use super::{LonLat, geodesic};
    use crate::expr::functions::testing::{batch, show, texts};

    const SQUARE: &str =
        "'{\"type\":\"Polygon\",\"coordinates\":[[[0,0],[10,0],[10,10],[0,10],[0,0]]]}'";

    #[test]
    fn createpoint_makes_asa_geojson_records() {
        assert_eq!(
            show("CAST(CreatePoint(3.0, -10.2) AS nvarchar(max))"),
            r#"{"type":"Point","coordinates":[-10.2,3.0]}"#
        );
        assert_eq!(show("CreatePoint(-87.33, 20.2321).type"), "Point");
        assert_eq!(show("CreatePoint(NULL, 1)"), "NULL");
        assert!(show("CreatePoint(91, 0)").contains("latitudes are within [-90, 90]"));
        assert!(show("CreatePoint('x', 0)").starts_with("error:"));
    }

    #[test]
    fn createlinestring_and_createpolygon_follow_asa_examples() {
        assert_eq!(
            show(
                "CAST(CreateLineString(CreatePoint(3.0, -10.2), CreatePoint(10.0, 10.0), \
                 CreatePoint(10.5, 10.5)) AS nvarchar(max))"
            ),
            r#"{"type":"LineString","coordinates":[[-10.2,3.0],[10.0,10.0],[10.5,10.5]]}"#
        );
        assert_eq!(
            show(
                "CAST(CreatePolygon(CreatePoint(3.0, -10.2), CreatePoint(10.0, 10.0), \
                 CreatePoint(10.5, 10.5), CreatePoint(3.0, -10.2)) AS nvarchar(max))"
            ),
            r#"{"type":"Polygon","coordinates":[[[-10.2,3.0],[10.0,10.0],[10.5,10.5],[-10.2,3.0]]]}"#
        );
        // An open ring is closed.
        assert_eq!(
            show(
                "CAST(CreatePolygon(CreatePoint(0, 0), CreatePoint(0, 1), CreatePoint(1, 1)) \
                 AS nvarchar(max))"
            ),
            r#"{"type":"Polygon","coordinates":[[[0.0,0.0],[1.0,0.0],[1.0,1.0],[0.0,0.0]]]}"#
        );
        assert_eq!(show("CreateLineString(CreatePoint(0, 0), NULL)"), "NULL");
        assert!(
            show("CreatePolygon(CreatePoint(0, 0), CreatePoint(0, 1), CreatePoint(0, 0))")
                .contains("at least 3 corners")
        );
        assert!(show("CreateLineString(CreatePoint(0, 0))").contains("at least 2 arguments"));
        assert!(show("CreateLineString(1, 2)").contains("expects a geography"));
    }

    #[test]
    fn st_distance_is_the_wgs84_geodesic() {
        // ASA's example: 784028.74077501823.
        let d = geodesic(
            LonLat {
                lon: -5.0,
                lat: -5.0,
            },
            LonLat { lon: 0.0, lat: 0.0 },
        );
        assert!((d - 784_028.740_775).abs() < 0.01, "{d}");
        assert_eq!(
            show(
                "ROUND(ST_DISTANCE('{\"type\":\"Point\", \"coordinates\": [-5.0, -5.0]}', \
                 CreatePoint(0, 0)), 2)"
            ),
            "784028.74"
        );
        // One degree of latitude at the equator; a degree of longitude there.
        assert_eq!(
            show("ROUND(ST_DISTANCE(CreatePoint(0, 0), CreatePoint(1, 0)), 1)"),
            "110574.4"
        );
        assert_eq!(
            show("ROUND(ST_DISTANCE(CreatePoint(0, 0), CreatePoint(0, 1)), 1)"),
            "111319.5"
        );
        assert_eq!(
            show("ST_DISTANCE(CreatePoint(47.4, 8.5), 'POINT(8.5 47.4)')"),
            "0.0"
        );
        // Nearly antipodal: Vincenty does not converge; the sphere answers.
        let far = geodesic(
            LonLat { lon: 0.0, lat: 0.0 },
            LonLat {
                lon: 179.7,
                lat: 0.5,
            },
        );
        assert!((19_900_000.0..20_040_000.0).contains(&far), "{far}");
        // With a polygon: 0 inside, else to the nearest edge (on the sphere).
        assert_eq!(
            show(&format!("ST_DISTANCE(CreatePoint(5, 5), {SQUARE})")),
            "0.0"
        );
        assert_eq!(
            show(&format!(
                "ROUND(ST_DISTANCE(CreatePoint(5, 11), {SQUARE}) / 1000, 0)"
            )),
            "111.0"
        );
        assert_eq!(show("ST_DISTANCE(NULL, CreatePoint(0, 0))"), "NULL");
    }

    #[test]
    fn st_within_follows_asa_examples() {
        assert_eq!(
            show(&format!(
                "ST_WITHIN('{{\"type\":\"Point\", \"coordinates\": [76.6, 10.1]}}', {SQUARE})"
            )),
            "0"
        );
        assert_eq!(
            show(
                "ST_WITHIN('{\"type\":\"Point\", \"coordinates\": [15.0, 15.0]}', \
                 '{\"type\":\"Polygon\", \"coordinates\": [[ [10.0, 10.0], [20.0, 10.0], \
                 [20.0, 20.0], [10.0, 20.0], [10.0, 10.0] ]]}')"
            ),
            "1"
        );
        assert_eq!(
            show(&format!("ST_WITHIN(CreatePoint(5, 5), {SQUARE})")),
            "1"
        );
        assert_eq!(
            show(&format!("ST_WITHIN(CreatePoint(5, -0.01), {SQUARE})")),
            "0"
        );
        // Edges are great circles: the northern one, from (10, 10) to
        // (0, 10), reaches latitude 10.0377 at longitude 5.
        assert_eq!(
            show(&format!("ST_WITHIN(CreatePoint(10.03, 5), {SQUARE})")),
            "1"
        );
        assert_eq!(
            show(&format!("ST_WITHIN(CreatePoint(10.05, 5), {SQUARE})")),
            "0"
        );
        // WKT, a clockwise ring (the globe minus the square), a polygon.
        assert_eq!(
            show("ST_WITHIN(CreatePoint(5, 5), 'POLYGON((0 0, 10 0, 10 10, 0 10, 0 0))')"),
            "1"
        );
        assert_eq!(
            show("ST_WITHIN(CreatePoint(5, 5), 'POLYGON((0 0, 0 10, 10 10, 10 0, 0 0))')"),
            "0"
        );
        assert_eq!(
            show("ST_WITHIN(CreatePoint(50, 50), 'POLYGON((0 0, 0 10, 10 10, 10 0, 0 0))')"),
            "1"
        );
        assert_eq!(
            show(&format!(
                "ST_WITHIN('POLYGON((2 2, 3 2, 3 3, 2 3, 2 2))', {SQUARE})"
            )),
            "1"
        );
        assert_eq!(
            show(&format!(
                "ST_WITHIN({SQUARE}, 'POLYGON((2 2, 3 2, 3 3, 2 3, 2 2))')"
            )),
            "0"
        );
        assert_eq!(
            show(&format!("ST_WITHIN('LINESTRING(1 1, 9 9)', {SQUARE})")),
            "1"
        );
        assert_eq!(
            show(&format!("ST_WITHIN('LINESTRING(1 1, 19 9)', {SQUARE})")),
            "0"
        );
        assert_eq!(show("ST_WITHIN(CreatePoint(0, 0), CreatePoint(0, 0))"), "0");
        assert_eq!(show(&format!("ST_WITHIN(NULL, {SQUARE})")), "NULL");
    }

    #[test]
    fn st_intersects_follows_asa_examples() {
        let road = "'{\"type\":\"LineString\", \"coordinates\": [ [-10.0, 0.0], [0.0, 0.0], [10.0, 0.0] ]}'";
        assert_eq!(
            show(&format!(
                "ST_INTERSECTS({road}, '{{\"type\":\"LineString\", \"coordinates\": \
                 [ [0.0, 10.0], [0.0, 0.0], [0.0, -10.0] ]}}')"
            )),
            "1"
        );
        assert_eq!(
            show(&format!(
                "ST_INTERSECTS({road}, '{{\"type\":\"LineString\", \"coordinates\": \
                 [ [-10.0, 10.0], [0.0, 10.0], [10.0, 10.0] ]}}')"
            )),
            "0"
        );
        assert_eq!(
            show("ST_INTERSECTS('LINESTRING(0 -1, 1 1)', 'LINESTRING(1 -1, 0 1)')"),
            "1"
        );
        assert_eq!(
            show("ST_INTERSECTS('LINESTRING(0 0, 1 1)', 'POINT(0.5 0.5)')"),
            "0"
        );
        assert_eq!(
            show("ST_INTERSECTS('LINESTRING(0 0, 1 0)', 'POINT(0.5 0)')"),
            "1"
        );
        assert_eq!(
            show(&format!("ST_INTERSECTS('LINESTRING(5 5, 6 6)', {SQUARE})")),
            "1"
        );
        assert_eq!(
            show(&format!(
                "ST_INTERSECTS('LINESTRING(-5 5, 15 5)', {SQUARE})"
            )),
            "1"
        );
        assert_eq!(
            show(&format!(
                "ST_INTERSECTS('LINESTRING(-5 -5, -1 -1)', {SQUARE})"
            )),
            "0"
        );
        assert_eq!(
            show(&format!("ST_INTERSECTS(CreatePoint(5, 5), {SQUARE})")),
            "1"
        );
        assert_eq!(
            show("ST_INTERSECTS(CreatePoint(5, 5), CreatePoint(5, 5))"),
            "1"
        );
        assert_eq!(
            show("ST_INTERSECTS(CreatePoint(5, 5), CreatePoint(5, 5.001))"),
            "0"
        );
    }

    #[test]
    fn st_overlaps_follows_asa_examples() {
        // ASA's examples, in their own two-level form.
        assert_eq!(
            show(
                "ST_OVERLAPS('{\"type\":\"Polygon\", \"coordinates\": [ [0.0, 0.0], [10.0, 0.0], \
                 [10.0, 10.0], [0.0, 10.0], [0.0, 0.0] ]}', '{\"type\":\"Polygon\", \
                 \"coordinates\": [ [30.0, 30.0], [40.0, 30.0], [40.0, 40.0], [30.0, 40.0], \
                 [30.0, 30.0] ]}')"
            ),
            "0"
        );
        assert_eq!(
            show(&format!(
                "ST_OVERLAPS({SQUARE}, 'POLYGON((5 5, 15 5, 15 15, 5 15, 5 5))')"
            )),
            "1"
        );
        assert_eq!(
            show(&format!(
                "ST_OVERLAPS({SQUARE}, 'POLYGON((2 2, 3 2, 3 3, 2 3, 2 2))')"
            )),
            "0"
        );
        assert_eq!(
            show(&format!(
                "ST_OVERLAPS('POLYGON((2 2, 3 2, 3 3, 2 3, 2 2))', {SQUARE})"
            )),
            "0"
        );
        assert_eq!(
            show(&format!("ST_OVERLAPS(CreatePoint(5, 5), {SQUARE})")),
            "0"
        );
    }

    #[test]
    fn geographies_come_from_records_and_text_columns() {
        let lat: ArrayRef = Arc::new(Float64Array::from(vec![Some(5.0), Some(20.0), None]));
        let lon: ArrayRef = Arc::new(Float64Array::from(vec![Some(5.0), Some(5.0), Some(1.0)]));
        let fence: ArrayRef = Arc::new(StringArray::from(vec![
            Some("POLYGON((0 0, 10 0, 10 10, 0 10, 0 0))"),
            Some("POLYGON((0 0, 10 0, 10 10, 0 10, 0 0))"),
            None,
        ]));
        let b = batch(vec![("lat", lat), ("lon", lon), ("fence", fence)]);
        assert_eq!(
            texts("ST_WITHIN(CreatePoint(lat, lon), fence)", &b).unwrap(),
            ["1", "0", "NULL"]
        );
        assert_eq!(
            texts(&format!("ST_WITHIN(CreatePoint(lat, lon), {SQUARE})"), &b).unwrap(),
            ["1", "0", "NULL"]
        );
        assert!(
            texts(
                "ST_WITHIN(CreatePoint(lat, lon), 'POLYGON((0 0, 1 1))')",
                &b
            )
            .unwrap_err()
            .contains("ST_WITHIN: not a geography: a polygon has at least 3 corners")
        );
        assert!(
            texts("ST_DISTANCE(fence, 'nowhere')", &b)
                .unwrap_err()
                .contains("`nowhere` is neither GeoJSON nor WKT")
        );
    }
}
