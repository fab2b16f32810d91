//! The Avro decoder on containers built here (every codec, blocks of
//! arrays and maps with and without byte sizes, fields to skip), and on
//! the manifests pyiceberg writes (see `formats::testing`).

use super::*;

/// Zigzag varint ("Binary Encoding").
fn long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    loop {
        let byte = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    long(out, s.len() as i64);
    out.extend_from_slice(s);
}

const SCHEMA: &str = r#"{"type": "record", "name": "entry", "fields": [
    {"name": "status", "type": "int"},
    {"name": "stats", "type": {"type": "map", "values": {"type": "array", "items": "long"}}},
    {"name": "bounds", "type": {"type": "array", "items": {"type": "record", "name": "kv",
        "fields": [{"name": "key", "type": "int"}, {"name": "value", "type": "bytes"}]}}},
    {"name": "data_file", "type": {"type": "record", "name": "r2", "fields": [
        {"name": "file_path", "type": "string"},
        {"name": "checksum", "type": {"type": "fixed", "name": "md5", "size": 4}},
        {"name": "kind", "type": {"type": "enum", "name": "k", "symbols": ["A", "B"]}},
        {"name": "partition", "type": {"type": "record", "name": "p", "fields": [
            {"name": "ds", "type": ["null", {"type": "int", "logicalType": "date"}]}]}},
        {"name": "ratio", "type": "double"},
        {"name": "again", "type": ["null", "kv"]}
    ]}}
]}"#;

/// One record of `SCHEMA`: status `i`, day `1000 + i`; its stats map in a
/// block with a byte size when `sized`, its bounds array in two blocks.
fn record(out: &mut Vec<u8>, i: i64, sized: bool) {
    long(out, i);
    let mut items = Vec::new();
    string(&mut items, b"k");
    long(&mut items, 2);
    long(&mut items, -5);
    long(&mut items, 1 << 40);
    long(&mut items, 0);
    if sized {
        long(out, -1);
        long(out, items.len() as i64);
    } else {
        long(out, 1);
    }
    out.extend_from_slice(&items);
    long(out, 0);
    for _ in 0..2 {
        long(out, 1);
        long(out, 7);
        string(out, b"\x00\x01");
    }
    long(out, 0);
    string(out, format!("f{i}.parquet").as_bytes());
    out.extend_from_slice(b"abcd");
    long(out, 1);
    long(out, 1);
    long(out, 1000 + i);
    out.extend_from_slice(&1.5f64.to_le_bytes());
    long(out, 1);
    long(out, 3);
    string(out, b"x");
}

const SYNC: &[u8; 16] = b"0123456789abcdef";

/// A container of `SCHEMA` records in blocks of `per_block`, compressed
/// by `codec`.
fn container(codec: &str, records: i64, per_block: i64) -> Vec<u8> {
    let mut out = b"Obj\x01".to_vec();
    long(&mut out, 2);
    string(&mut out, b"avro.schema");
    string(&mut out, SCHEMA.as_bytes());
    string(&mut out, b"avro.codec");
    string(&mut out, codec.as_bytes());
    long(&mut out, 0);
    out.extend_from_slice(SYNC);
    let mut i = 0;
    while i < records {
        let mut block = Vec::new();
        let n = per_block.min(records - i);
        for j in 0..n {
            record(&mut block, i + j, (i + j) % 2 == 0);
        }
        let data = match codec {
            "deflate" => miniz_oxide::deflate::compress_to_vec(&block, 6),
            "snappy" => {
                let mut data = snap::raw::Encoder::new().compress_vec(&block).unwrap();
                data.extend_from_slice(&crc32fast::hash(&block).to_be_bytes());
                data
            }
            _ => block,
        };
        long(&mut out, n);
        long(&mut out, data.len() as i64);
        out.extend_from_slice(&data);
        out.extend_from_slice(SYNC);
        i += n;
    }
    out
}

fn wants() -> Vec<Want> {
    vec![
        Want::whole("status"),
        Want::some(
            "data_file",
            vec![
                Want::whole("file_path"),
                Want::some("partition", vec![Want::whole("ds")]),
                Want::whole("not_there"),
            ],
        ),
    ]
}

fn decode(bytes: &[u8]) -> Result<Vec<Value>, AvroError> {
    let container = Container::open(bytes)?;
    let plan = plan(container.schema(), &wants())?;
    let mut out = Vec::new();
    container.read(
        &plan,
        |e| e,
        |_, v| {
            out.push(v);
            Ok(())
        },
    )?;
    Ok(out)
}

#[test]
fn the_fields_asked_for_are_decoded_and_the_rest_skipped_in_every_codec() {
    for codec in ["null", "deflate", "snappy"] {
        let values = decode(&container(codec, 5, 2)).unwrap();
        assert_eq!(values.len(), 5, "{codec}");
        for (i, value) in values.iter().enumerate() {
            assert_eq!(value.field(0), &Value::Int(i as i32), "{codec}");
            let data_file = value.field(1);
            assert_eq!(
                data_file,
                &Value::Record(vec![
                    Value::String(format!("f{i}.parquet")),
                    Value::Record(vec![Value::Date(1000 + i as i32)]),
                    Value::Null,
                ]),
                "{codec}"
            );
        }
    }
}

#[test]
fn a_whole_record_decodes_every_field() {
    let bytes = container("null", 1, 1);
    let container = Container::open(&bytes).unwrap();
    let plan = plan(
        container.schema(),
        &[Want::whole("bounds"), Want::whole("stats")],
    )
    .unwrap();
    let mut got = Vec::new();
    container
        .read(
            &plan,
            |e| e,
            |_, v| {
                got.push(v);
                Ok(())
            },
        )
        .unwrap();
    let kv = || Value::Record(vec![Value::Int(7), Value::Bytes(vec![0, 1])]);
    assert_eq!(
        got,
        [Value::Record(vec![
            Value::Array(vec![kv(), kv()]),
            Value::Map(vec![(
                "k".into(),
                Value::Array(vec![Value::Long(-5), Value::Long(1 << 40)])
            )]),
        ])]
    );
}

#[test]
fn what_is_damaged_is_said_to_be_so() {
    let good = container("snappy", 3, 3);
    let not_avro = |bytes: &[u8]| matches!(decode(bytes), Err(AvroError::NotAvro(_)));
    assert!(not_avro(b"PAR1 not avro"));
    assert!(not_avro(&good[..10]));
    // Cut inside the block, a wrong sync marker, a flipped data byte (the
    // CRC), an unknown codec.
    let corrupt = |bytes: &[u8]| matches!(decode(bytes), Err(AvroError::Corrupt(_)));
    assert!(corrupt(&good[..good.len() - 20]));
    let mut wrong_sync = good.clone();
    *wrong_sync.last_mut().unwrap() ^= 1;
    assert!(corrupt(&wrong_sync));
    let mut flipped = good.clone();
    let at = good.len() - 16 - 6;
    flipped[at] ^= 0x40;
    assert!(corrupt(&flipped));
    let mut zstd = container("null", 1, 1);
    let at = zstd.windows(5).position(|w| w == b"\x08null").unwrap();
    zstd[at + 1..at + 5].copy_from_slice(b"zstd");
    assert!(matches!(decode(&zstd), Err(AvroError::Codec(c)) if c == "zstd"));
    // A block claiming more records than it has.
    let mut out = container("null", 0, 1);
    long(&mut out, 1_000_000_000);
    let mut block = Vec::new();
    record(&mut block, 0, false);
    long(&mut out, block.len() as i64);
    out.extend_from_slice(&block);
    out.extend_from_slice(SYNC);
    assert!(corrupt(&out));
}

#[test]
fn numbers_decode_at_their_extremes() {
    for n in [0, 1, -1, 63, -64, 64, i32::MAX as i64, i64::MAX, i64::MIN] {
        let mut bytes = Vec::new();
        long(&mut bytes, n);
        assert_eq!(Cursor::new(&bytes).long().unwrap(), n);
    }
    assert!(Cursor::new(&[0xff; 11]).long().is_err());
    assert!(Cursor::new(&[0x80]).long().is_err());
}
