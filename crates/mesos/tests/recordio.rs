//! RecordIO framing: encoding, incremental decoding across arbitrary chunk boundaries, and
//! rejection of malformed lengths.

use proptest::prelude::*;
use tepui_mesos::recordio::{self, Decoder, RecordIoError};
use tepui_mesos::scheduler::Event;

#[test]
fn encodes_length_newline_record() {
    assert_eq!(
        recordio::encode(br#"{"type":"HEARTBEAT"}"#),
        b"20\n{\"type\":\"HEARTBEAT\"}".to_vec()
    );
    assert_eq!(recordio::encode(b""), b"0\n".to_vec());
    let mut out = Vec::new();
    recordio::encode_into(b"ab", &mut out);
    recordio::encode_into(b"cde", &mut out);
    assert_eq!(out, b"2\nab3\ncde".to_vec());
    // The length counts bytes, not characters.
    assert_eq!(recordio::encode("é".as_bytes()), b"2\n\xc3\xa9".to_vec());
}

#[test]
fn encode_json_frames_an_event() {
    let framed = recordio::encode_json(&Event::heartbeat()).unwrap();
    let mut d = Decoder::new();
    let records = d.decode(&framed).unwrap();
    assert_eq!(records.len(), 1);
    let ev: Event = serde_json::from_slice(&records[0]).unwrap();
    assert_eq!(ev, Event::heartbeat());
    d.finish().unwrap();
}

#[test]
fn decodes_several_records_in_one_chunk() {
    let mut d = Decoder::new();
    let records = d.decode(b"3\nabc1\nx0\n5\nhello").unwrap();
    assert_eq!(
        records,
        vec![b"abc".to_vec(), b"x".to_vec(), b"".to_vec(), b"hello".to_vec()]
    );
    assert_eq!(d.buffered(), 0);
    d.finish().unwrap();
}

#[test]
fn decodes_byte_by_byte() {
    let stream = b"10\n{\"a\":true}11\n{\"b\":false}";
    let mut d = Decoder::new();
    let mut got = Vec::new();
    for b in stream {
        got.extend(d.decode(std::slice::from_ref(b)).unwrap());
    }
    assert_eq!(got, vec![br#"{"a":true}"#.to_vec(), br#"{"b":false}"#.to_vec()]);
    d.finish().unwrap();
}

#[test]
fn split_inside_the_length_and_inside_the_body() {
    let mut d = Decoder::new();
    assert!(d.decode(b"1").unwrap().is_empty());
    assert!(d.decode(b"0").unwrap().is_empty());
    assert!(d.decode(b"\n01234").unwrap().is_empty());
    assert_eq!(d.buffered(), 5);
    assert_eq!(d.decode(b"56789").unwrap(), vec![b"0123456789".to_vec()]);
    assert!(d.decode(b"").unwrap().is_empty());
}

#[test]
fn every_split_point_of_a_three_record_stream() {
    let records: Vec<Vec<u8>> = vec![b"{\"type\":\"SUBSCRIBED\"}".to_vec(), vec![], b"x".repeat(123)];
    let mut stream = Vec::new();
    for r in &records {
        recordio::encode_into(r, &mut stream);
    }
    for i in 0..=stream.len() {
        for j in i..=stream.len() {
            let mut d = Decoder::new();
            let mut got = d.decode(&stream[..i]).unwrap();
            got.extend(d.decode(&stream[i..j]).unwrap());
            got.extend(d.decode(&stream[j..]).unwrap());
            assert_eq!(got, records, "split at {i}/{j}");
            d.finish().unwrap();
        }
    }
}

#[test]
fn non_digit_length_is_an_error_and_the_decoder_stays_failed() {
    let mut d = Decoder::new();
    let err = d.decode(b"12a\n").unwrap_err();
    assert!(
        matches!(err, RecordIoError::InvalidLength { ref header, .. } if header == "12a"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "invalid record length header \"12a\": not a decimal number"
    );
    // Even a valid continuation is refused: framing cannot be recovered.
    assert_eq!(d.decode(b"1\na").unwrap_err(), err);
    assert_eq!(d.finish().unwrap_err(), err);
}

#[test]
fn malformed_lengths() {
    for (input, reason) in [
        (&b"\n"[..], "empty"),
        (b"-1\nx", "not a decimal number"),
        (b" 5\nhello", "not a decimal number"),
        (b"5 \nhello", "not a decimal number"),
        (b"5\r\nhello", "not a decimal number"),
        (b"{\"type\":\"HEARTBEAT\"}", "not a decimal number"),
        (b"123456789012345678901\n", "too many digits"),
        (b"99999999999999999999\n", "does not fit in 64 bits"),
    ] {
        let err = Decoder::new().decode(input).unwrap_err();
        match err {
            RecordIoError::InvalidLength { reason: r, .. } => assert_eq!(r, reason, "{input:?}"),
            other => panic!("{input:?}: {other}"),
        }
    }
    // Too many digits is caught before the newline arrives (no unbounded header buffering).
    let mut d = Decoder::new();
    assert!(d.decode(b"1234567890").unwrap().is_empty());
    assert!(d.decode(b"1234567890").unwrap().is_empty());
    assert!(d.decode(b"1").is_err());
}

#[test]
fn record_longer_than_the_limit_is_an_error() {
    let mut d = Decoder::with_max_record_len(8);
    assert_eq!(d.decode(b"8\n12345678").unwrap(), vec![b"12345678".to_vec()]);
    assert_eq!(d.decode(b"9\n").unwrap_err(), RecordIoError::TooLong { len: 9, max: 8 });
    // The default limit stops absurd lengths before any buffering.
    let err = Decoder::new().decode(b"18446744073709551615\n").unwrap_err();
    assert!(matches!(err, RecordIoError::TooLong { .. }), "{err}");
}

#[test]
fn finish_reports_a_truncated_stream() {
    let mut d = Decoder::new();
    d.decode(b"10\nabc").unwrap();
    assert_eq!(d.finish(), Err(RecordIoError::Truncated { buffered: 3 }));
    let mut d = Decoder::new();
    d.decode(b"10").unwrap();
    assert_eq!(d.finish(), Err(RecordIoError::Truncated { buffered: 2 }));
    let mut d = Decoder::new();
    d.decode(b"2\nab").unwrap();
    d.finish().unwrap();
}

proptest! {
    #[test]
    fn any_records_any_chunking(
        records in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..12),
        cuts in prop::collection::vec(0usize..4000, 0..20),
    ) {
        let mut stream = Vec::new();
        for r in &records {
            recordio::encode_into(r, &mut stream);
        }
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.push(0);
        cuts.push(stream.len());
        cuts.sort_unstable();
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for w in cuts.windows(2) {
            got.extend(d.decode(&stream[w[0]..w[1]]).unwrap());
        }
        prop_assert_eq!(got, records);
        prop_assert!(d.finish().is_ok());
    }
}
