//! A test-only plugin that misbehaves on purpose, so the host's limits and
//! checks can be shown to hold. The mode is the configuration text:
//!
//! | config | behaviour when mapping |
//! |---|---|
//! | `ok` (or empty) | maps normally, `Label` = `ok` |
//! | `version:<label>` | maps normally, `Label` = `<label>` |
//! | `loop` | spins forever |
//! | `trap` | panics (a trap; the message goes to stderr) |
//! | `memory-bomb` | allocates 1 MiB blocks until stopped |
//! | `huge:<rows>` | emits `<rows>` rows of 1 KiB text for the first record |
//! | `wrong-schema` | returns two columns for a schema of four |
//! | `wrong-type` | returns text values for the integer key column |
//! | `reject` | rejects every record |
//! | `recurse` | recurses without end (a wasm stack overflow) |
//! | `bad-utf8-offsets` | `Label` text offsets that split a character |
//! | `decimal-out-of-range` | an `Amount` of 39 digits for `decimal(38,9)` |
//!
//! `wrong-schema`, `wrong-type`, `bad-utf8-offsets` and
//! `decimal-out-of-range` build their output by hand, past the SDK's own
//! checks, so that the host's checks are what stops them.
//! Anything else is refused by `configure`. Resource `items` maps records
//! `{"id": <int>, "amount": <number>?, "cc": "<cost center>"?}` to
//! `Index`, `Label`, `Amount` (decimal(38,9)), `Cost Center` (the
//! `cost-centers` description via `lookup`).

use std::cell::RefCell;

use mlc_plugin_sdk::column::{self, ColumnExt};
use mlc_plugin_sdk::{
    BatchOutput, Column, ColumnData, ColumnValues, Guest, Lookups, MapError, Mapper, Object,
    PluginError, Rejection, Rows, TextValues, Value,
};

enum Mode {
    Ok(String),
    Loop,
    Trap,
    MemoryBomb,
    Huge(usize),
    WrongSchema,
    WrongType,
    BadUtf8Offsets,
    DecimalOutOfRange,
    Recurse,
    Reject,
}

struct Misbehave {
    mode: Mode,
    lookups: Lookups,
}

impl Mapper for Misbehave {
    fn configure(config: &str) -> Result<Self, PluginError> {
        let config = config.trim();
        let mode = match config {
            "" | "ok" => Mode::Ok("ok".into()),
            "loop" => Mode::Loop,
            "trap" => Mode::Trap,
            "memory-bomb" => Mode::MemoryBomb,
            "wrong-schema" => Mode::WrongSchema,
            "wrong-type" => Mode::WrongType,
            "bad-utf8-offsets" => Mode::BadUtf8Offsets,
            "recurse" => Mode::Recurse,
            "decimal-out-of-range" => Mode::DecimalOutOfRange,
            "reject" => Mode::Reject,
            other => match other.split_once(':') {
                Some(("version", label)) if !label.is_empty() => Mode::Ok(label.to_owned()),
                Some(("huge", rows)) => Mode::Huge(rows.parse().map_err(|_| {
                    PluginError::invalid_config(format!(
                        "huge:<rows> needs a row count, got {rows:?}"
                    ))
                })?),
                _ => {
                    return Err(PluginError::invalid_config(format!(
                        "unknown mode {other:?}"
                    )));
                }
            },
        };
        Ok(Self {
            mode,
            lookups: Lookups::new(),
        })
    }

    fn resources(&self) -> Vec<String> {
        vec!["items".into()]
    }

    fn schema(&self, resource: &str) -> Option<Vec<Column>> {
        (resource == "items").then(|| {
            vec![
                column::integer("Index").key(),
                column::text("Label"),
                column::decimal("Amount", 38, 9).nullable(),
                column::text("Cost Center").nullable(),
            ]
        })
    }

    fn map(&self, _resource: &str, rec: &Object<'_>, rows: &mut Rows) -> Result<(), MapError> {
        match &self.mode {
            Mode::Ok(label) => {
                let cost_center = match rec.opt_str("cc")? {
                    Some(cc) => self
                        .lookups
                        .description("cost-centers", &cc)?
                        .map_or(Value::Null, Value::Text),
                    None => Value::Null,
                };
                rows.push(vec![
                    rec.integer("id")?,
                    Value::Text(label.clone()),
                    rec.opt_decimal("amount", 38, 9)?,
                    cost_center,
                ]);
            }
            Mode::Loop => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Mode::Trap => trap(),
            Mode::Recurse => {
                std::hint::black_box(recurse(std::hint::black_box(1)));
            }
            Mode::MemoryBomb => {
                let mut blocks: Vec<Vec<u8>> = Vec::new();
                loop {
                    blocks.push(std::hint::black_box(vec![1u8; 1 << 20]));
                }
            }
            Mode::Huge(count) => {
                if rows.source() == 0 {
                    let text = "x".repeat(1024);
                    for i in 0..*count {
                        rows.push(vec![
                            Value::Integer(i as i64),
                            Value::Text(text.clone()),
                            Value::Null,
                            Value::Null,
                        ]);
                    }
                }
            }
            // Built by hand in `map_batch` below.
            Mode::WrongSchema
            | Mode::WrongType
            | Mode::BadUtf8Offsets
            | Mode::DecimalOutOfRange => {}
            Mode::Reject => {
                return Err(Rejection::field("id", "this plugin rejects every record").into());
            }
        }
        Ok(())
    }
}

/// Panics on purpose: with `panic = "abort"` this is a wasm trap, and the
/// message reaches the host through the guest's stderr.
#[allow(clippy::panic)]
fn trap() -> ! {
    panic!("misbehave: trapping on purpose")
}

/// Calls itself until the wasm stack is exhausted; the frame holds an
/// array so that it cannot be turned into a loop.
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 16]);
    recurse(depth + 1).wrapping_add(frame[(depth % 16) as usize])
}

/// Text values for `rows` rows.
fn texts(rows: usize, value: &str) -> ColumnData {
    ColumnData {
        nulls: Vec::new(),
        values: ColumnValues::Text(TextValues {
            text: value.repeat(rows),
            ends: (1..=rows).map(|i| (i * value.len()) as u32).collect(),
        }),
    }
}

/// An output that does not follow the schema, or `None` for the modes the
/// SDK drives.
fn broken_output(mode: &Mode, records: usize) -> Option<BatchOutput> {
    let sources: Vec<u32> = (0..records as u32).collect();
    let columns = match mode {
        Mode::WrongSchema => vec![
            ColumnData {
                nulls: Vec::new(),
                values: ColumnValues::Integer(sources.iter().map(|&i| i64::from(i)).collect()),
            },
            texts(records, "short"),
        ],
        Mode::WrongType => vec![
            texts(records, "not an integer"),
            texts(records, "wrong-type"),
            ColumnData {
                nulls: sources.clone(),
                values: ColumnValues::Decimal(mlc_plugin_sdk::DecimalValues {
                    scale: 9,
                    lo: vec![0; records],
                    hi: vec![0; records],
                }),
            },
            ColumnData {
                nulls: sources.clone(),
                values: ColumnValues::Text(TextValues {
                    text: String::new(),
                    ends: vec![0; records],
                }),
            },
        ],
        Mode::BadUtf8Offsets | Mode::DecimalOutOfRange => {
            let integers = ColumnData {
                nulls: Vec::new(),
                values: ColumnValues::Integer(sources.iter().map(|&i| i64::from(i)).collect()),
            };
            let label = if matches!(mode, Mode::BadUtf8Offsets) {
                // "é" is two bytes: every end falls inside a character.
                ColumnData {
                    nulls: Vec::new(),
                    values: ColumnValues::Text(TextValues {
                        text: "é".repeat(records),
                        ends: (0..records).map(|i| (2 * i + 1) as u32).collect(),
                    }),
                }
            } else {
                texts(records, "ok")
            };
            // i128::MAX unscaled: 39 digits, one more than decimal(38, 9)
            // holds.
            let amount = ColumnData {
                nulls: Vec::new(),
                values: ColumnValues::Decimal(mlc_plugin_sdk::DecimalValues {
                    scale: 9,
                    lo: vec![u64::MAX; records],
                    hi: vec![i64::MAX; records],
                }),
            };
            let cost_center = ColumnData {
                nulls: sources.clone(),
                values: ColumnValues::Text(TextValues {
                    text: String::new(),
                    ends: vec![0; records],
                }),
            };
            vec![integers, label, amount, cost_center]
        }
        _ => return None,
    };
    Some(BatchOutput {
        sources,
        columns,
        rejects: Vec::new(),
    })
}

thread_local! {
    static MAPPER: RefCell<Option<Misbehave>> = const { RefCell::new(None) };
}

fn not_configured() -> PluginError {
    PluginError::internal("misbehave: configure was not called")
}

struct Export;

impl Guest for Export {
    fn configure(config: String) -> Result<(), PluginError> {
        let mapper = Misbehave::configure(&config)?;
        MAPPER.with(|m| *m.borrow_mut() = Some(mapper));
        Ok(())
    }

    fn resources() -> Vec<String> {
        MAPPER.with(|m| {
            m.borrow()
                .as_ref()
                .map(Mapper::resources)
                .unwrap_or_default()
        })
    }

    fn schema(resource: String) -> Result<Vec<Column>, PluginError> {
        MAPPER.with(|m| {
            let guard = m.borrow();
            let mapper = guard.as_ref().ok_or_else(not_configured)?;
            mapper
                .schema(&resource)
                .ok_or(PluginError::UnknownResource(resource))
        })
    }

    fn map_batch(resource: String, records: Vec<String>) -> Result<BatchOutput, PluginError> {
        MAPPER.with(|m| {
            let guard = m.borrow();
            let mapper = guard.as_ref().ok_or_else(not_configured)?;
            match broken_output(&mapper.mode, records.len()) {
                Some(output) => Ok(output),
                None => mlc_plugin_sdk::map_records(mapper, &resource, &records),
            }
        })
    }
}

mlc_plugin_sdk::bindings::export!(Export with_types_in mlc_plugin_sdk::bindings);
