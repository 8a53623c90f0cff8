//! Cases the model test found, replayed as they were printed (timing-dependent operations
//! replay with the same delays, so a failure may need a few runs).

use omega_agent::engine::Delivery;

use crate::ops::{Op, RowKind, RowOp};

/// Found by a 128-case run: `delivery: puback`, link cuts and crashes between writes.
pub fn puback_cuts_and_crashes() -> (Delivery, Vec<Op>) {
    (
        Delivery::Puback,
        vec![
            Op::Resume(1),
            Op::Cut { after_ms: 92 },
            Op::Cut { after_ms: 21 },
            Op::Pause(2),
            Op::Pause(1),
            Op::Cut { after_ms: 106 },
            Op::Txn(vec![
                (
                    1,
                    RowOp {
                        key: 4,
                        kind: RowKind::Upsert,
                        values: vec![
                            Some(119),
                            Some(228),
                            Some(162),
                            Some(161),
                            Some(114),
                            Some(85),
                        ],
                    },
                ),
                (
                    2,
                    RowOp {
                        key: 5,
                        kind: RowKind::Replace,
                        values: vec![Some(91), Some(89), None, Some(53), None, None],
                    },
                ),
                (
                    1,
                    RowOp {
                        key: 2,
                        kind: RowKind::Upsert,
                        values: vec![Some(117), Some(56), Some(87), None, Some(102), Some(63)],
                    },
                ),
                (
                    0,
                    RowOp {
                        key: 1,
                        kind: RowKind::Delete,
                        values: vec![None, Some(249), Some(46), Some(114), Some(5), None],
                    },
                ),
            ]),
            Op::Settle,
            Op::Crash { after_ms: 37 },
            Op::Txn(vec![(
                2,
                RowOp {
                    key: 4,
                    kind: RowKind::Upsert,
                    values: vec![Some(120), None, Some(154), Some(106), Some(18), Some(120)],
                },
            )]),
            Op::Txn(vec![
                (
                    1,
                    RowOp {
                        key: 5,
                        kind: RowKind::Upsert,
                        values: vec![Some(212), Some(32), Some(214), Some(119), None, Some(221)],
                    },
                ),
                (
                    1,
                    RowOp {
                        key: 1,
                        kind: RowKind::Delete,
                        values: vec![
                            Some(254),
                            Some(132),
                            Some(8),
                            Some(224),
                            Some(242),
                            Some(81),
                        ],
                    },
                ),
                (
                    2,
                    RowOp {
                        key: 0,
                        kind: RowKind::Delete,
                        values: vec![Some(189), Some(179), Some(3), None, Some(97), Some(11)],
                    },
                ),
                (
                    0,
                    RowOp {
                        key: 2,
                        kind: RowKind::Upsert,
                        values: vec![
                            Some(189),
                            Some(254),
                            Some(87),
                            Some(220),
                            Some(76),
                            Some(57),
                        ],
                    },
                ),
            ]),
            Op::Txn(vec![
                (
                    1,
                    RowOp {
                        key: 4,
                        kind: RowKind::Delete,
                        values: vec![
                            Some(59),
                            Some(173),
                            Some(233),
                            Some(246),
                            Some(148),
                            Some(67),
                        ],
                    },
                ),
                (
                    2,
                    RowOp {
                        key: 0,
                        kind: RowKind::Upsert,
                        values: vec![Some(20), Some(216), Some(117), Some(18), Some(225), None],
                    },
                ),
            ]),
            Op::Settle,
            Op::Txn(vec![
                (
                    2,
                    RowOp {
                        key: 2,
                        kind: RowKind::Replace,
                        values: vec![
                            Some(65),
                            Some(121),
                            Some(198),
                            Some(28),
                            Some(204),
                            Some(162),
                        ],
                    },
                ),
                (
                    1,
                    RowOp {
                        key: 2,
                        kind: RowKind::Delete,
                        values: vec![Some(185), None, Some(64), Some(48), Some(39), Some(204)],
                    },
                ),
            ]),
            Op::Crash { after_ms: 17 },
            Op::Txn(vec![
                (
                    1,
                    RowOp {
                        key: 3,
                        kind: RowKind::Upsert,
                        values: vec![Some(35), Some(0), Some(116), Some(173), Some(62), None],
                    },
                ),
                (
                    2,
                    RowOp {
                        key: 5,
                        kind: RowKind::Delete,
                        values: vec![Some(207), Some(233), None, Some(6), Some(169), Some(229)],
                    },
                ),
                (
                    2,
                    RowOp {
                        key: 5,
                        kind: RowKind::Upsert,
                        values: vec![Some(236), None, None, Some(31), None, Some(33)],
                    },
                ),
                (
                    2,
                    RowOp {
                        key: 4,
                        kind: RowKind::Upsert,
                        values: vec![None, Some(120), None, Some(138), Some(138), Some(68)],
                    },
                ),
                (
                    1,
                    RowOp {
                        key: 0,
                        kind: RowKind::Upsert,
                        values: vec![Some(101), Some(239), Some(182), Some(217), Some(37), None],
                    },
                ),
            ]),
            Op::Resume(1),
            Op::Redeliver(43674),
            Op::Settle,
            Op::Resume(2),
            Op::Resume(1),
            Op::Txn(vec![
                (
                    2,
                    RowOp {
                        key: 0,
                        kind: RowKind::Replace,
                        values: vec![
                            Some(108),
                            Some(53),
                            Some(93),
                            Some(113),
                            Some(95),
                            Some(224),
                        ],
                    },
                ),
                (
                    0,
                    RowOp {
                        key: 4,
                        kind: RowKind::Upsert,
                        values: vec![None, Some(92), Some(67), Some(56), None, Some(228)],
                    },
                ),
            ]),
        ],
    )
}
