use std::time::Duration;

use super::*;

#[test]
fn histogram_is_cumulative_with_sum_and_count() {
    let h = Histogram::new(&[0.01, 0.1, 1.0]);
    h.observe(Duration::from_millis(5));
    h.observe(Duration::from_millis(50));
    h.observe(Duration::from_millis(50));
    h.observe(Duration::from_secs(3));
    let mut enc = Encoder::new();
    enc.family("t_seconds", "A test.", Kind::Histogram)
        .histogram("t_seconds", &[("route", "/v1/x")], &h);
    let text = enc.finish();
    assert!(
        text.contains("t_seconds_bucket{route=\"/v1/x\",le=\"0.01\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("t_seconds_bucket{route=\"/v1/x\",le=\"0.1\"} 3\n"),
        "{text}"
    );
    assert!(
        text.contains("t_seconds_bucket{route=\"/v1/x\",le=\"1\"} 3\n"),
        "{text}"
    );
    assert!(
        text.contains("t_seconds_bucket{route=\"/v1/x\",le=\"+Inf\"} 4\n"),
        "{text}"
    );
    assert!(text.contains("t_seconds_sum{route=\"/v1/x\"} 3.105\n"), "{text}");
    assert!(text.contains("t_seconds_count{route=\"/v1/x\"} 4\n"), "{text}");
    let parsed = exposition::parse(&text).unwrap();
    assert_eq!(parsed["t_seconds"].sum("t_seconds_count", &[("route", "/v1/x")]), 4.0);
}

#[test]
fn labels_are_escaped_and_read_back() {
    let mut enc = Encoder::new();
    enc.family("x_total", "Odd \\ help\nacross lines.", Kind::Counter)
        .sample("x_total", &[("path", "a\"b\\c\nd")], 3.0);
    let text = enc.finish();
    let parsed = exposition::parse(&text).unwrap();
    let s = &parsed["x_total"].samples[0];
    assert_eq!(s.labels["path"], "a\"b\\c\nd");
    assert_eq!(s.value, 3.0);
}

#[test]
fn registry_renders_collectors_in_order_and_replaces_by_name() {
    let r = Registry::default();
    r.register("a", |e| {
        e.single("a_value", "A.", Kind::Gauge, 1.0);
    });
    r.register("b", |e| {
        e.single("b_value", "B.", Kind::Gauge, 2.0);
    });
    r.register("a", |e| {
        e.single("a_value", "A.", Kind::Gauge, 3.0);
    });
    let mut enc = Encoder::new();
    r.collect(&mut enc);
    let text = enc.finish();
    assert_eq!(
        text,
        "# HELP a_value A.\n# TYPE a_value gauge\na_value 3\n# HELP b_value B.\n# TYPE b_value gauge\nb_value 2\n"
    );
    process::render(&mut Encoder::new());
}

#[test]
fn process_families_pass_the_strict_reader() {
    let mut enc = Encoder::new();
    process::render(&mut enc);
    let parsed = exposition::parse(&enc.finish()).unwrap();
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_threads",
        "process_start_time_seconds",
    ] {
        assert!(parsed.contains_key(name), "{name} missing");
    }
}

#[test]
fn the_strict_reader_refuses_what_promtool_refuses() {
    let bad = [
        ("x 1\n", "outside"),
        ("# TYPE x gauge\n# HELP x h\nx 1\n# TYPE y gauge\n# HELP y h\ny 1\nx{a=\"b\"} 2\n", "outside"),
        ("# HELP x h\n# TYPE x counter\nx 1\n", "_total"),
        ("# HELP x_total h\n# TYPE x_total gauge\nx_total 1\n", "_total"),
        ("# HELP x h\n# TYPE x gauge\nx 1\nx 2\n", "twice"),
        ("# HELP x h\n# TYPE x gauge\nx{a=\"1\",a=\"2\"} 1\n", "twice"),
        ("# HELP x h\n# TYPE x gauge\nx{a=1} 1\n", "quoted"),
        ("# HELP x h\n# TYPE x gauge\nx one\n", "bad value"),
        ("# HELP 1x h\n# TYPE 1x gauge\n", "bad metric name"),
        ("# HELP x h\n# TYPE x gauge\n# HELP x again\n", "second HELP"),
        (
            "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n",
            "going down",
        ),
        ("# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_sum 1\nh_count 2\n", "+Inf"),
        ("# HELP h h\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n", "_count"),
        ("# TYPE x gauge\nx 1\n", "no HELP"),
    ];
    for (text, why) in bad {
        let err = exposition::parse(text).expect_err(text);
        assert!(err.contains(why), "{text:?}: {err}");
    }
}
