//! Geospatial commands: GEOADD, GEOPOS, GEODIST, GEOHASH, GEOSEARCH,
//! GEOSEARCHSTORE and the older GEORADIUS family.
//!
//! A geo set is an ordinary sorted set whose scores are 52-bit interleaved
//! geohashes, so ZRANGE and friends see the scores Redis stores. Searches
//! cover the cell holding the centre and its eight neighbours at the
//! precision Redis picks, visit them in Redis's order and walk each cell's
//! score window in score order: the same members come back in the same
//! order, and the distances are the same doubles (the same formulas, in the
//! same operation order, over the platform's libm).

use keel_shards::zset::ScoreBound;
use keel_shards::{Shard, ZSet};

use super::error::{CmdError, CmdResult};
use super::{is, read, write, Ctx};
use crate::cmd::numbers::{int_arg, parse_double};
use crate::cmd::zsets::store;
use crate::resp::reply::Reply;

/// Bits per coordinate in a stored score (26 + 26 = 52: exact in a double).
const STEP_MAX: u32 = 26;
/// Latitudes beyond these have no Web Mercator projection; Redis refuses them.
const LAT_MIN: f64 = -85.05112878;
const LAT_MAX: f64 = 85.05112878;
const LON_MIN: f64 = -180.0;
const LON_MAX: f64 = 180.0;
/// The Earth radius Redis measures with, in meters.
const EARTH_RADIUS: f64 = 6372797.560856;
/// Half the Mercator world width, which bounds the cell-size estimate.
const MERCATOR_MAX: f64 = 20037726.37;
const D_R: f64 = std::f64::consts::PI / 180.0;

fn deg_rad(d: f64) -> f64 {
    d * D_R
}

fn rad_deg(r: f64) -> f64 {
    r / D_R
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Hash {
    bits: u64,
    step: u32,
}

impl Hash {
    /// A neighbour that was ruled out of the search.
    const NONE: Hash = Hash { bits: 0, step: 0 };
}

#[derive(Clone, Copy)]
struct Range {
    min: f64,
    max: f64,
}

const LON_RANGE: Range = Range {
    min: LON_MIN,
    max: LON_MAX,
};
const LAT_RANGE: Range = Range {
    min: LAT_MIN,
    max: LAT_MAX,
};

struct Area {
    lon: Range,
    lat: Range,
}

/// Spreads the 32 bits of `v` over the even bit positions of a u64.
fn spread(v: u32) -> u64 {
    let mut x = v as u64;
    x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x << 2)) & 0x3333_3333_3333_3333;
    x = (x | (x << 1)) & 0x5555_5555_5555_5555;
    x
}

/// Gathers the even bit positions of `x` into a u32.
fn gather(x: u64) -> u32 {
    let mut x = x & 0x5555_5555_5555_5555;
    x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
    x = (x | (x >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x >> 4)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x >> 16)) & 0x0000_0000_FFFF_FFFF;
    x as u32
}

/// Latitude bits in the even positions, longitude bits in the odd ones.
fn interleave(lat: u32, lon: u32) -> u64 {
    spread(lat) | (spread(lon) << 1)
}

/// A fraction of the range scaled to `2^step` cells, as a C cast from
/// double to uint32_t truncates it (the value is never negative here).
fn cell(offset: f64) -> u32 {
    offset as u32
}

fn encode(lon_r: Range, lat_r: Range, lon: f64, lat: f64, step: u32) -> Option<Hash> {
    if !(1..=32).contains(&step) {
        return None;
    }
    if !(LON_MIN..=LON_MAX).contains(&lon) || !(LAT_MIN..=LAT_MAX).contains(&lat) {
        return None;
    }
    if lat < lat_r.min || lat > lat_r.max || lon < lon_r.min || lon > lon_r.max {
        return None;
    }
    let cells = (1u64 << step) as f64;
    let lat_off = (lat - lat_r.min) / (lat_r.max - lat_r.min) * cells;
    let lon_off = (lon - lon_r.min) / (lon_r.max - lon_r.min) * cells;
    Some(Hash {
        bits: interleave(cell(lat_off), cell(lon_off)),
        step,
    })
}

/// The cell a hash names. The `+ 1` wraps as unsigned 32-bit arithmetic
/// does, which matters only for scores that were never geohashes.
fn decode(lon_r: Range, lat_r: Range, h: Hash) -> Area {
    let lat_i = gather(h.bits);
    let lon_i = gather(h.bits >> 1);
    let cells = (1u64 << h.step) as f64;
    let (lat_s, lon_s) = (lat_r.max - lat_r.min, lon_r.max - lon_r.min);
    Area {
        lat: Range {
            min: lat_r.min + (lat_i as f64 / cells) * lat_s,
            max: lat_r.min + (lat_i.wrapping_add(1) as f64 / cells) * lat_s,
        },
        lon: Range {
            min: lon_r.min + (lon_i as f64 / cells) * lon_s,
            max: lon_r.min + (lon_i.wrapping_add(1) as f64 / cells) * lon_s,
        },
    }
}

/// A score converted to an unsigned 64-bit integer as x86-64 C code does
/// it: scores a client stored with ZADD (negative, huge) decode to the same
/// clamped positions as in Redis instead of Rust's saturated ones.
fn score_bits(score: f64) -> u64 {
    const TWO63: f64 = 9_223_372_036_854_775_808.0;
    let cvtt = |v: f64| -> i64 {
        if v.is_nan() || !(-TWO63..TWO63).contains(&v) {
            i64::MIN
        } else {
            v as i64
        }
    };
    if score >= TWO63 {
        (cvtt(score - TWO63) as u64) ^ (1u64 << 63)
    } else {
        cvtt(score) as u64
    }
}

/// The centre of the cell a stored score names, clamped to the valid area.
fn decode_score(score: f64) -> (f64, f64) {
    let h = Hash {
        bits: score_bits(score),
        step: STEP_MAX,
    };
    let a = decode(LON_RANGE, LAT_RANGE, h);
    let lon = ((a.lon.min + a.lon.max) / 2.0).clamp(LON_MIN, LON_MAX);
    let lat = ((a.lat.min + a.lat.max) / 2.0).clamp(LAT_MIN, LAT_MAX);
    (lon, lat)
}

/// The stored score of a valid position.
fn score_of(lon: f64, lat: f64) -> f64 {
    // At full precision the interleaved bits are the 52-bit score as is.
    encode(LON_RANGE, LAT_RANGE, lon, lat, STEP_MAX).map_or(0.0, |h| h.bits as f64)
}

fn lat_distance(lat1: f64, lat2: f64) -> f64 {
    EARTH_RADIUS * (deg_rad(lat2) - deg_rad(lat1)).abs()
}

/// Haversine distance in meters.
fn distance(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let (lon1r, lon2r) = (deg_rad(lon1), deg_rad(lon2));
    let v = ((lon2r - lon1r) / 2.0).sin();
    if v == 0.0 {
        return lat_distance(lat1, lat2);
    }
    let (lat1r, lat2r) = (deg_rad(lat1), deg_rad(lat2));
    let u = ((lat2r - lat1r) / 2.0).sin();
    let a = u * u + lat1r.cos() * lat2r.cos() * v * v;
    2.0 * EARTH_RADIUS * a.sqrt().asin()
}

/// A distance as Redis prints it: rounded (half to even) to 4 decimals.
fn distance_text(d: f64) -> Vec<u8> {
    if d == 0.0 {
        return b"0.0000".to_vec();
    }
    // llrint: round half to even; out-of-range values become i64::MIN.
    let scaled = (d * 10000.0).round_ties_even();
    let v: i64 =
        if scaled.is_nan() || !(-9.223372036854776e18..9.223372036854776e18).contains(&scaled) {
            i64::MIN
        } else {
            scaled as i64
        };
    let (neg, mag) = (v < 0, v.unsigned_abs());
    let digits = mag.to_string();
    let (int, frac) = if digits.len() > 4 {
        digits.split_at(digits.len() - 4)
    } else {
        ("0", digits.as_str())
    };
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    out.push_str(int);
    out.push('.');
    for _ in frac.len()..4 {
        out.push('0');
    }
    out.push_str(frac);
    out.into_bytes()
}

/// A coordinate as Redis prints it: 17 decimals, trailing zeros trimmed.
fn coord_text(v: f64) -> Vec<u8> {
    let mut s = format!("{v:.17}");
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    if s == "-0" {
        s = "0".into();
    }
    s.into_bytes()
}

/// A coordinate reply. Redis sends a RESP3 double here, printed with this
/// text; a keel handler cannot know the protocol, so it is a bulk string in
/// both (exact in RESP2).
fn coord_reply(lon: f64, lat: f64) -> Reply {
    Reply::Array(vec![
        Reply::DoubleText(coord_text(lon)),
        Reply::DoubleText(coord_text(lat)),
    ])
}

fn coord_arg(s: &[u8]) -> Result<f64, CmdError> {
    parse_double(s).ok_or(CmdError::NotFloat)
}

/// A longitude, latitude pair, range-checked.
fn lon_lat(a: &[&[u8]]) -> Result<(f64, f64), CmdError> {
    let lon = coord_arg(a[0])?;
    let lat = coord_arg(a[1])?;
    if !(LON_MIN..=LON_MAX).contains(&lon) || !(LAT_MIN..=LAT_MAX).contains(&lat) {
        return Err(CmdError::other(format!(
            "invalid longitude,latitude pair {lon:.6},{lat:.6}"
        )));
    }
    Ok((lon, lat))
}

/// Meters per unit.
fn unit(u: &[u8]) -> Result<f64, CmdError> {
    if is(u, "m") {
        Ok(1.0)
    } else if is(u, "km") {
        Ok(1000.0)
    } else if is(u, "ft") {
        Ok(0.3048)
    } else if is(u, "mi") {
        Ok(1609.34)
    } else {
        Err(CmdError::other(
            "unsupported unit provided. please use M, KM, FT, MI",
        ))
    }
}

fn member_pos(
    s: &mut Shard,
    ctx: &Ctx,
    key: &[u8],
    m: &[u8],
) -> Result<Option<(f64, f64)>, CmdError> {
    Ok(read(s, ctx, key, |z: &ZSet| z.score(m))?
        .flatten()
        .map(decode_score))
}

pub fn geoadd(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let (mut nx, mut xx, mut ch) = (false, false, false);
    let mut i = 2;
    while i < a.len() {
        if is(a[i], "nx") {
            nx = true;
        } else if is(a[i], "xx") {
            xx = true;
        } else if is(a[i], "ch") {
            ch = true;
        } else {
            break;
        }
        i += 1;
    }
    let rest = &a[i..];
    if rest.is_empty() || !rest.len().is_multiple_of(3) || (nx && xx) {
        return Err(CmdError::Syntax);
    }
    let points: Vec<(f64, &[u8])> = rest
        .chunks_exact(3)
        .map(|p| {
            let (lon, lat) = lon_lat(p)?;
            Ok((score_of(lon, lat), p[2]))
        })
        .collect::<Result<_, CmdError>>()?;
    let r = write(s, ctx, a[1], !xx, |z: &mut ZSet, hlc| {
        let (mut added, mut changed) = (0i64, 0i64);
        for &(score, m) in &points {
            match z.score(m) {
                Some(_) if nx => {}
                Some(cur) => {
                    if cur != score {
                        z.insert(m, score, hlc);
                        changed += 1;
                    }
                }
                None if xx => {}
                None => {
                    z.insert(m, score, hlc);
                    added += 1;
                }
            }
        }
        Ok((
            if ch { added + changed } else { added },
            added + changed > 0,
        ))
    })?;
    Ok(Reply::Int(r.unwrap_or(0)))
}

pub fn geopos(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let ms = &a[2..];
    let r = read(s, ctx, a[1], |z: &ZSet| {
        ms.iter()
            .map(|m| {
                z.score(m).map_or(Reply::NilArray, |sc| {
                    let (lon, lat) = decode_score(sc);
                    coord_reply(lon, lat)
                })
            })
            .collect()
    })?;
    Ok(Reply::Array(
        r.unwrap_or_else(|| vec![Reply::NilArray; ms.len()]),
    ))
}

pub fn geodist(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let to_meters = match a.len() {
        4 => 1.0,
        5 => unit(a[4])?,
        _ => return Err(CmdError::Syntax),
    };
    let r = read(s, ctx, a[1], |z: &ZSet| {
        Some((z.score(a[2])?, z.score(a[3])?))
    })?;
    Ok(match r.flatten() {
        None => Reply::Nil,
        Some((s1, s2)) => {
            let (lon1, lat1) = decode_score(s1);
            let (lon2, lat2) = decode_score(s2);
            Reply::Bulk(distance_text(distance(lon1, lat1, lon2, lat2) / to_meters))
        }
    })
}

pub fn geohash(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    // The standard geohash spans latitudes ±90, not the ±85.05 of the
    // stored scores: the position is re-encoded over that range.
    const STD_LAT: Range = Range {
        min: -90.0,
        max: 90.0,
    };
    let ms = &a[2..];
    let text = |sc: f64| {
        let (lon, lat) = decode_score(sc);
        let bits = encode(LON_RANGE, STD_LAT, lon, lat, STEP_MAX)?.bits;
        let mut out = Vec::with_capacity(11);
        for i in 0..11 {
            // 52 bits make ten characters; the eleventh is a zero, as Redis
            // pads it.
            let idx = if i == 10 {
                0
            } else {
                ((bits >> (52 - (i + 1) * 5)) & 0x1f) as usize
            };
            out.push(ALPHABET[idx]);
        }
        Some(out)
    };
    let r = read(s, ctx, a[1], |z: &ZSet| {
        ms.iter()
            .map(|m| z.score(m).and_then(text).map_or(Reply::Nil, Reply::Bulk))
            .collect()
    })?;
    Ok(Reply::Array(
        r.unwrap_or_else(|| vec![Reply::Nil; ms.len()]),
    ))
}

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Radius(f64),
    Box { width: f64, height: f64 },
}

/// Which command's syntax a search follows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    /// GEORADIUS (`store`: STORE/STOREDIST accepted).
    Radius { store: bool },
    /// GEORADIUSBYMEMBER.
    ByMember { store: bool },
    /// GEOSEARCH / GEOSEARCHSTORE.
    Search { store: bool },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sort {
    None,
    Asc,
    Desc,
}

struct Point {
    member: Vec<u8>,
    lon: f64,
    lat: f64,
    dist: f64,
    score: f64,
}

/// The search area: centre, shape and meters per unit.
struct Query {
    lon: f64,
    lat: f64,
    shape: Shape,
    to_meters: f64,
}

impl Query {
    /// The distance to a point if it lies within the shape.
    fn within(&self, lon: f64, lat: f64) -> Option<f64> {
        match self.shape {
            Shape::Radius(r) => {
                let d = distance(self.lon, self.lat, lon, lat);
                (d <= r * self.to_meters).then_some(d)
            }
            Shape::Box { width, height } => {
                let (w, h) = (width * self.to_meters, height * self.to_meters);
                if lat_distance(lat, self.lat) > h / 2.0 {
                    return None;
                }
                if distance(lon, lat, self.lon, lat) > w / 2.0 {
                    return None;
                }
                Some(distance(self.lon, self.lat, lon, lat))
            }
        }
    }

    /// The cell precision for a search radius: the finest whose cells
    /// still hold the radius, one coarser near the poles.
    fn estimate_step(range: f64, lat: f64) -> u32 {
        if range == 0.0 {
            return 26;
        }
        let mut range = range;
        let mut step: i32 = 1;
        while range < MERCATOR_MAX {
            range *= 2.0;
            step += 1;
        }
        step -= 2;
        if !(-66.0..=66.0).contains(&lat) {
            step -= 1;
            if !(-80.0..=80.0).contains(&lat) {
                step -= 1;
            }
        }
        step.clamp(1, 26) as u32
    }

    /// The centre cell and its eight neighbours, in the order Redis visits
    /// them (centre, N, S, E, W, NE, NW, SE, SW); neighbours that cannot
    /// hold a match are `Hash::NONE`.
    fn cells(&self) -> [Hash; 9] {
        let (lon, lat) = (self.lon, self.lat);
        let (half_h, half_w) = match self.shape {
            Shape::Radius(r) => (self.to_meters * r, self.to_meters * r),
            Shape::Box { width, height } => (
                self.to_meters * (height / 2.0),
                self.to_meters * (width / 2.0),
            ),
        };
        let lat_delta = rad_deg(half_h / EARTH_RADIUS);
        let lon_delta_top = rad_deg(half_w / EARTH_RADIUS / deg_rad(lat + lat_delta).cos());
        let lon_delta_bottom = rad_deg(half_w / EARTH_RADIUS / deg_rad(lat - lat_delta).cos());
        // The box is widest on the side nearer the equator.
        let lon_delta = if lat < 0.0 {
            lon_delta_bottom
        } else {
            lon_delta_top
        };
        let (min_lon, max_lon) = (lon - lon_delta, lon + lon_delta);
        let (min_lat, max_lat) = (lat - lat_delta, lat + lat_delta);
        let radius = match self.shape {
            Shape::Radius(r) => r,
            Shape::Box { width, height } => {
                ((width / 2.0) * (width / 2.0) + (height / 2.0) * (height / 2.0)).sqrt()
            }
        } * self.to_meters;
        let mut step = Self::estimate_step(radius, lat);
        let at = |step| encode(LON_RANGE, LAT_RANGE, lon, lat, step).unwrap_or(Hash::NONE);
        let mut hash = at(step);
        // The centre is range-checked before any search, so this cannot
        // fail; if it did, nothing is searched rather than a shift panics.
        if hash == Hash::NONE {
            return [Hash::NONE; 9];
        }
        let mut n = neighbours(hash);
        let area = |h| decode(LON_RANGE, LAT_RANGE, h);
        // A cell too large for its neighbours to reach the box's edge on
        // some side: one step coarser.
        let too_fine = area(n[0]).lat.max < max_lat
            || area(n[1]).lat.min > min_lat
            || area(n[2]).lon.max < max_lon
            || area(n[3]).lon.min > min_lon;
        if step > 1 && too_fine {
            step -= 1;
            hash = at(step);
            n = neighbours(hash);
        }
        let [mut north, mut south, mut east, mut west, mut ne, mut nw, mut se, mut sw] = n;
        if step >= 2 {
            let a = area(hash);
            if a.lat.min < min_lat {
                (south, sw, se) = (Hash::NONE, Hash::NONE, Hash::NONE);
            }
            if a.lat.max > max_lat {
                (north, ne, nw) = (Hash::NONE, Hash::NONE, Hash::NONE);
            }
            if a.lon.min < min_lon {
                (west, sw, nw) = (Hash::NONE, Hash::NONE, Hash::NONE);
            }
            if a.lon.max > max_lon {
                (east, se, ne) = (Hash::NONE, Hash::NONE, Hash::NONE);
            }
        }
        [hash, north, south, east, west, ne, nw, se, sw]
    }

    /// The matching points, in visiting order; stops once `limit` (COUNT
    /// ANY) points are found.
    fn search(&self, z: &ZSet, limit: usize) -> Vec<Point> {
        let cells = self.cells();
        let mut out: Vec<Point> = Vec::new();
        let full = |out: &Vec<Point>| limit > 0 && out.len() >= limit;
        // Index of the last cell walked (0 also before any: the centre is
        // never compared with its north neighbour, as in Redis).
        let mut last = 0;
        for (i, &c) in cells.iter().enumerate() {
            if c == Hash::NONE {
                continue;
            }
            // Huge radii make adjacent neighbours coincide.
            if last != 0 && c == cells[last] {
                continue;
            }
            if full(&out) {
                break;
            }
            let shift = 52 - 2 * c.step;
            let min = (c.bits << shift) as f64;
            let max = (c.bits.wrapping_add(1) << shift) as f64;
            let (b, e) = z.score_ranks(
                ScoreBound {
                    value: min,
                    exclusive: false,
                },
                ScoreBound {
                    value: max,
                    exclusive: true,
                },
            );
            let mut stop = false;
            z.range(b, e, |score, m| {
                if stop {
                    return;
                }
                let (lon, lat) = decode_score(score);
                if let Some(dist) = self.within(lon, lat) {
                    out.push(Point {
                        member: m.to_vec(),
                        lon,
                        lat,
                        dist,
                        score,
                    });
                }
                stop = full(&out);
            });
            last = i;
        }
        out
    }
}

/// The eight neighbours of a cell: N, S, E, W, NE, NW, SE, SW.
fn neighbours(h: Hash) -> [Hash; 8] {
    let mv = |h: Hash, dx: i8, dy: i8| {
        let shift = 64 - 2 * h.step;
        let mut bits = h.bits;
        // Longitude bits are the odd positions, latitude bits the even ones;
        // adding one to a coordinate carries through the other's bits when
        // they are all set.
        for (d, own, other) in [
            (dx, 0xAAAA_AAAA_AAAA_AAAAu64, 0x5555_5555_5555_5555u64),
            (dy, 0x5555_5555_5555_5555u64, 0xAAAA_AAAA_AAAA_AAAAu64),
        ] {
            if d == 0 {
                continue;
            }
            let mut x = bits & own;
            let y = bits & other;
            let zz = other >> shift;
            if d > 0 {
                x = x.wrapping_add(zz.wrapping_add(1));
            } else {
                x = (x | zz).wrapping_sub(zz.wrapping_add(1));
            }
            x &= own >> shift;
            bits = x | y;
        }
        Hash { bits, step: h.step }
    };
    [
        mv(h, 0, 1),
        mv(h, 0, -1),
        mv(h, 1, 0),
        mv(h, -1, 0),
        mv(h, 1, 1),
        mv(h, -1, 1),
        mv(h, 1, -1),
        mv(h, -1, -1),
    ]
}

fn radius_arg(a: &[&[u8]]) -> Result<(f64, f64), CmdError> {
    let r = parse_double(a[0]).ok_or_else(|| CmdError::other("need numeric radius"))?;
    if r < 0.0 {
        return Err(CmdError::other("radius cannot be negative"));
    }
    Ok((r, unit(a[1])?))
}

fn box_arg(a: &[&[u8]]) -> Result<(f64, f64, f64), CmdError> {
    let w = parse_double(a[0]).ok_or_else(|| CmdError::other("need numeric width"))?;
    let h = parse_double(a[1]).ok_or_else(|| CmdError::other("need numeric height"))?;
    if h < 0.0 || w < 0.0 {
        return Err(CmdError::other("height or width cannot be negative"));
    }
    Ok((w, h, unit(a[2])?))
}

/// Every search command: checks in Redis's order (the source key's type,
/// the fixed arguments, the options left to right, then the combinations),
/// searches, sorts, and replies or stores.
fn search_generic(s: &mut Shard, ctx: &Ctx, a: &[&[u8]], form: Form) -> CmdResult {
    let src = match form {
        Form::Search { store: true } => a[2],
        _ => a[1],
    };
    let exists = read(s, ctx, src, |_: &ZSet| ())?.is_some();
    let mut center: Option<(f64, f64)> = None;
    let mut shape: Option<(Shape, f64)> = None;
    let base = match form {
        Form::Radius { .. } => {
            center = Some(lon_lat(&a[2..4])?);
            let (r, u) = radius_arg(&a[4..6])?;
            shape = Some((Shape::Radius(r), u));
            6
        }
        Form::ByMember { .. } => {
            if exists {
                let Some(pos) = member_pos(s, ctx, src, a[2])? else {
                    return Err(CmdError::other("could not decode requested zset member"));
                };
                center = Some(pos);
                let (r, u) = radius_arg(&a[3..5])?;
                shape = Some((Shape::Radius(r), u));
            }
            5
        }
        Form::Search { store } => 2 + store as usize,
    };
    let search = matches!(form, Form::Search { .. });
    let store_opts = matches!(
        form,
        Form::Radius { store: true } | Form::ByMember { store: true }
    );
    let mut store_key: Option<&[u8]> = match form {
        Form::Search { store: true } => Some(a[1]),
        _ => None,
    };
    let (mut with_dist, mut with_hash, mut with_coord) = (false, false, false);
    let (mut from_member, mut from_loc, mut by_radius, mut by_box) = (false, false, false, false);
    let (mut sort, mut any, mut count, mut store_dist) = (Sort::None, false, 0usize, false);
    let mut i = base;
    while i < a.len() {
        let o = a[i];
        let left = a.len() - i - 1;
        if is(o, "withdist") {
            with_dist = true;
        } else if is(o, "withhash") {
            with_hash = true;
        } else if is(o, "withcoord") {
            with_coord = true;
        } else if is(o, "any") {
            any = true;
        } else if is(o, "asc") {
            sort = Sort::Asc;
        } else if is(o, "desc") {
            sort = Sort::Desc;
        } else if is(o, "count") && left >= 1 {
            let n = int_arg(a[i + 1])?;
            if n <= 0 {
                return Err(CmdError::other("COUNT must be > 0"));
            }
            count = usize::try_from(n).unwrap_or(usize::MAX);
            i += 1;
        } else if (is(o, "store") || is(o, "storedist")) && left >= 1 && store_opts {
            store_key = Some(a[i + 1]);
            store_dist = is(o, "storedist");
            i += 1;
        } else if is(o, "storedist") && form == (Form::Search { store: true }) {
            store_dist = true;
        } else if is(o, "frommember") && left >= 1 && search && !from_loc {
            // Without a source key the member cannot be looked up; the
            // parse goes on and the reply is empty.
            if exists {
                let Some(pos) = member_pos(s, ctx, src, a[i + 1])? else {
                    return Err(CmdError::other("could not decode requested zset member"));
                };
                center = Some(pos);
            }
            from_member = true;
            i += 1;
        } else if is(o, "fromlonlat") && left >= 2 && search && !from_member {
            center = Some(lon_lat(&a[i + 1..i + 3])?);
            from_loc = true;
            i += 2;
        } else if is(o, "byradius") && left >= 2 && search && !by_box {
            let (r, u) = radius_arg(&a[i + 1..i + 3])?;
            shape = Some((Shape::Radius(r), u));
            by_radius = true;
            i += 2;
        } else if is(o, "bybox") && left >= 3 && search && !by_radius {
            let (w, h, u) = box_arg(&a[i + 1..i + 4])?;
            shape = Some((
                Shape::Box {
                    width: w,
                    height: h,
                },
                u,
            ));
            by_box = true;
            i += 3;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    if store_key.is_some() && (with_dist || with_hash || with_coord) {
        let what = if form == (Form::Search { store: true }) {
            "GEOSEARCHSTORE"
        } else {
            "STORE option in GEORADIUS"
        };
        return Err(CmdError::other(format!(
            "{what} is not compatible with WITHDIST, WITHHASH and WITHCOORD options"
        )));
    }
    let name = String::from_utf8_lossy(a[0]);
    if search && !(from_member || from_loc) {
        return Err(CmdError::other(format!(
            "exactly one of FROMMEMBER or FROMLONLAT can be specified for {name}"
        )));
    }
    if search && !(by_radius || by_box) {
        return Err(CmdError::other(format!(
            "exactly one of BYRADIUS and BYBOX can be specified for {name}"
        )));
    }
    if any && count == 0 {
        return Err(CmdError::other("the ANY argument requires COUNT argument"));
    }
    let (Some((lon, lat)), Some((shape, to_meters)), true) = (center, shape, exists) else {
        return Ok(match store_key {
            Some(dst) => Reply::Int(store(s, ctx, dst, vec![])),
            None => Reply::Array(vec![]),
        });
    };
    // COUNT alone means the nearest ones.
    if count != 0 && sort == Sort::None && !any {
        sort = Sort::Asc;
    }
    let q = Query {
        lon,
        lat,
        shape,
        to_meters,
    };
    let limit = if any { count } else { 0 };
    let mut points = read(s, ctx, src, |z: &ZSet| q.search(z, limit))?.unwrap_or_default();
    match sort {
        Sort::None => {}
        Sort::Asc => points.sort_by(|x, y| x.dist.total_cmp(&y.dist)),
        Sort::Desc => points.sort_by(|x, y| y.dist.total_cmp(&x.dist)),
    }
    if count != 0 {
        points.truncate(count);
    }
    for p in &mut points {
        p.dist /= to_meters;
    }
    if let Some(dst) = store_key {
        let items = points
            .into_iter()
            .map(|p| (p.member, if store_dist { p.dist } else { p.score }))
            .collect();
        return Ok(Reply::Int(store(s, ctx, dst, items)));
    }
    let nested = with_dist || with_hash || with_coord;
    Ok(Reply::Array(
        points
            .into_iter()
            .map(|p| {
                if !nested {
                    return Reply::Bulk(p.member);
                }
                let mut item = vec![Reply::Bulk(p.member)];
                if with_dist {
                    item.push(Reply::Bulk(distance_text(p.dist)));
                }
                if with_hash {
                    item.push(Reply::Int(p.score as i64));
                }
                if with_coord {
                    item.push(coord_reply(p.lon, p.lat));
                }
                Reply::Array(item)
            })
            .collect(),
    ))
}

pub fn georadius(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    search_generic(s, ctx, a, Form::Radius { store: true })
}

pub fn georadius_ro(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    search_generic(s, ctx, a, Form::Radius { store: false })
}

pub fn georadiusbymember(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    search_generic(s, ctx, a, Form::ByMember { store: true })
}

pub fn georadiusbymember_ro(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    search_generic(s, ctx, a, Form::ByMember { store: false })
}

pub fn geosearch(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    search_generic(s, ctx, a, Form::Search { store: false })
}

pub fn geosearchstore(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    search_generic(s, ctx, a, Form::Search { store: true })
}

/// The keys of GEORADIUS / GEORADIUSBYMEMBER: the source and every key
/// named after STORE or STOREDIST, found as Redis finds them (from the
/// sixth argument on), so that a store key always routes with the source.
pub fn radius_keys<'a>(args: &[&'a [u8]]) -> Vec<&'a [u8]> {
    let mut keys: Vec<&[u8]> = args.get(1).copied().into_iter().collect();
    let mut i = 5;
    while i + 1 < args.len() {
        if is(args[i], "store") || is(args[i], "storedist") {
            keys.push(args[i + 1]);
            i += 1;
        }
        i += 1;
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palermo_round_trips_as_redis_prints_it() {
        let sc = score_of(13.361389, 38.115556);
        assert_eq!(sc, 3479099956230698.0);
        let (lon, lat) = decode_score(sc);
        assert_eq!(coord_text(lon), b"13.36138933897018433");
        assert_eq!(coord_text(lat), b"38.11555639549629859");
    }

    #[test]
    fn distance_and_text() {
        let (a, b) = (
            score_of(13.361389, 38.115556),
            score_of(15.087269, 37.502669),
        );
        let (p, q) = (decode_score(a), decode_score(b));
        assert_eq!(distance_text(distance(p.0, p.1, q.0, q.1)), b"166274.1516");
        assert_eq!(distance_text(0.0), b"0.0000");
        assert_eq!(distance_text(0.00005), b"0.0000");
        assert_eq!(distance_text(1.23456), b"1.2346");
    }

    #[test]
    fn foreign_scores_decode_like_c_casts() {
        assert_eq!(coord_text(decode_score(-1.0).0), b"180");
        assert_eq!(coord_text(decode_score(1e300).0), b"-179.99999731779098511");
    }

    #[test]
    fn radius_keys_find_store() {
        let a: Vec<&[u8]> = vec![b"GEORADIUS", b"k", b"1", b"2", b"3", b"m", b"STORE", b"d"];
        assert_eq!(radius_keys(&a), vec![&b"k"[..], &b"d"[..]]);
    }
}
