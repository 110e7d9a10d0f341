//! PFDEBUG and PFSELFTEST: Redis's debugging views of a HyperLogLog (its
//! encoding, registers and sparse opcodes) and its self test, which checks
//! the register layout and the estimator's error on this build.

use super::{
    count, get_register, hash_element, new, op_at, raise_dense, set_register, to_dense,
    walk_sparse, HllError, DENSE, HEADER_LEN, REGISTERS, SPARSE,
};

/// Whether a valid HyperLogLog value is sparse.
pub fn is_sparse(v: &[u8]) -> bool {
    v.get(4) == Some(&SPARSE)
}

/// Converts a sparse value to dense (PFDEBUG TODENSE and GETREG); returns
/// whether it was sparse. The registers, and so the count, do not change.
pub fn make_dense(v: &mut Vec<u8>) -> Result<bool, HllError> {
    if !is_sparse(v) {
        return Ok(false);
    }
    to_dense(v)?;
    Ok(true)
}

/// The 16384 register values of a valid value.
pub fn registers(v: &[u8]) -> Result<Vec<u8>, HllError> {
    if v.get(4) == Some(&DENSE) {
        return Ok((0..REGISTERS)
            .map(|i| get_register(&v[HEADER_LEN..], i))
            .collect());
    }
    let mut regs = vec![0u8; REGISTERS];
    walk_sparse(&v[HEADER_LEN..], |first, run, value| {
        regs[first..first + run].fill(value);
    })?;
    Ok(regs)
}

/// PFDEBUG DECODE: a sparse value's opcodes as Redis spells them
/// (`z:<run>` and `Z:<run>` for short and long zero runs, `v:<value>,<run>`).
pub fn decode_sparse(v: &[u8]) -> String {
    let payload = &v[HEADER_LEN.min(v.len())..];
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(op) = op_at(payload, pos) {
        out.push(match (op.value, op.len) {
            (0, 1) => format!("z:{}", op.run),
            (0, _) => format!("Z:{}", op.run),
            (value, _) => format!("v:{},{}", value, op.run),
        });
        pos += op.len;
    }
    out.join(" ")
}

/// PFSELFTEST: every dense register reads back what was written, and the
/// estimate stays within six standard errors of the true count from 1 to
/// 1,000,000 distinct elements, sparse and dense agreeing while both exist.
pub fn self_test() -> Result<(), String> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut regs = vec![0u8; (REGISTERS * 6).div_ceil(8) + 1];
    for _ in 0..100 {
        let want: Vec<u8> = (0..REGISTERS).map(|_| (next() & 63) as u8).collect();
        for (i, &r) in want.iter().enumerate() {
            set_register(&mut regs, i, r);
        }
        for (i, &r) in want.iter().enumerate() {
            if get_register(&regs, i) != r {
                return Err(format!("TESTFAILED Register error at {i}"));
            }
        }
    }
    let mut dense = new();
    to_dense(&mut dense).map_err(|e| e.to_string())?;
    let mut sparse = Some(new());
    let rel = 1.04 / (REGISTERS as f64).sqrt();
    let mut checkpoint = 1u64;
    for j in 1..=1_000_000u64 {
        let element = j.to_le_bytes();
        let (index, value) = hash_element(&element);
        raise_dense(&mut dense[HEADER_LEN..], index, value);
        dense[15] |= 0x80;
        if let Some(s) = sparse.as_mut() {
            super::add(s, &element, super::DEFAULT_SPARSE_MAX_BYTES).map_err(|e| e.to_string())?;
        }
        if j != checkpoint {
            continue;
        }
        let est = count(&mut dense).map_err(|e| e.to_string())?;
        let max_err = ((rel * 6.0 * j as f64).ceil() as u64).max(1);
        if est.abs_diff(j) > max_err {
            return Err(format!(
                "TESTFAILED Too big error. card:{j} abserr:{}",
                est.abs_diff(j)
            ));
        }
        if let Some(s) = sparse.as_mut() {
            let sparse_est = count(s).map_err(|e| e.to_string())?;
            if sparse_est != est {
                return Err(format!(
                    "TESTFAILED Sparse and dense differ at {j}: {sparse_est} != {est}"
                ));
            }
            if !is_sparse(s) {
                sparse = None;
            }
        }
        checkpoint *= 10;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_views_agree() {
        let mut v = new();
        for e in ["a", "b", "c"] {
            super::super::add(&mut v, e.as_bytes(), 3000).unwrap();
        }
        let regs = registers(&v).unwrap();
        assert_eq!(regs.iter().filter(|&&r| r > 0).count(), 3);
        let text = decode_sparse(&v);
        assert!(
            text.contains("v:") && text.starts_with(['z', 'Z']),
            "{text}"
        );
        assert!(make_dense(&mut v).unwrap());
        assert!(!is_sparse(&v) && !make_dense(&mut v).unwrap());
        assert_eq!(registers(&v).unwrap(), regs);
    }

    #[test]
    fn self_test_passes() {
        self_test().unwrap();
    }
}
