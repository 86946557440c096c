//! The rounds of `benches/streams.rs` summed up: each case's median rate with its range,
//! and each ratio as the median of the rounds' own ratios (raw and framework measured
//! back to back in one round see the same load).

/// One round's rates, in events per second: every case once.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Round {
    pub(crate) raw_publish: f64,
    pub(crate) raw_enveloped_publish: f64,
    pub(crate) send: f64,
    pub(crate) concurrent: f64,
    pub(crate) raw_concurrent: f64,
    pub(crate) raw_consume_plain: f64,
    pub(crate) raw_consume: f64,
    pub(crate) consume_100: f64,
    pub(crate) consume_1000: f64,
    pub(crate) consume_inline: f64,
    pub(crate) raw_consume_sent: f64,
    pub(crate) consume_sent: f64,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The median over `rounds` of `of` each round.
fn over(rounds: &[Round], of: impl Fn(&Round) -> f64) -> f64 {
    median(rounds.iter().map(of).collect())
}

/// Prints the median rate of each case with its range, then the ratios; `amqp` is the
/// framework's AMQP publish rate, or why it was not measured.
pub(crate) fn print(rounds: &[Round], amqp: &Result<f64, String>) {
    type Of = fn(&Round) -> f64;
    println!();
    println!(
        "summary of {} rounds: median rate (lowest – highest)",
        rounds.len()
    );
    let rates: [(&str, Of); 12] = [
        ("publish: raw client, send + callback", |r| r.raw_publish),
        (
            "publish: raw client encoding each event, with the envelope",
            |r| r.raw_enveloped_publish,
        ),
        ("publish: framework, bus.send pipelined", |r| r.send),
        ("publish: raw client, concurrent send_with_confirm", |r| {
            r.raw_concurrent
        }),
        ("publish: framework, concurrent bus.publish", |r| {
            r.concurrent
        }),
        ("consume: raw client, plain messages", |r| {
            r.raw_consume_plain
        }),
        ("consume: raw client, enveloped events", |r| r.raw_consume),
        ("consume: framework, prefetch 100", |r| r.consume_100),
        ("consume: framework, prefetch 1000", |r| r.consume_1000),
        (
            "consume: framework, prefetch 1000, Isolation::Inline",
            |r| r.consume_inline,
        ),
        ("consume of bus.send's stream: raw client", |r| {
            r.raw_consume_sent
        }),
        (
            "consume of bus.send's stream: framework, prefetch 1000",
            |r| r.consume_sent,
        ),
    ];
    for (name, of) in rates {
        let values: Vec<f64> = rounds.iter().map(of).collect();
        let low = values.iter().copied().fold(f64::INFINITY, f64::min);
        let high = values.iter().copied().fold(0.0, f64::max);
        println!(
            "  {name:<60} {:>8.0} /s  ({low:.0} – {high:.0})",
            median(values)
        );
    }

    println!();
    println!("framework / raw client, median of the rounds' ratios (goal ≥ 0.90 each):");
    let ratios: [(&str, Of); 11] = [
        ("publish, pipelined", |r| r.send / r.raw_publish),
        ("publish, concurrent awaits", |r| {
            r.concurrent / r.raw_publish
        }),
        (
            "(publish, concurrent awaits, against raw concurrent awaits)",
            |r| r.concurrent / r.raw_concurrent,
        ),
        ("consume, prefetch 100", |r| r.consume_100 / r.raw_consume),
        ("consume, prefetch 1000", |r| r.consume_1000 / r.raw_consume),
        ("(consume, prefetch 1000, Isolation::Inline)", |r| {
            r.consume_inline / r.raw_consume
        }),
        ("(consume of bus.send's stream)", |r| {
            r.consume_sent / r.raw_consume_sent
        }),
        (
            "(publish, against the raw client encoding + enveloping)",
            |r| r.send / r.raw_enveloped_publish,
        ),
        ("(raw: encoding + envelope / plain, publish)", |r| {
            r.raw_enveloped_publish / r.raw_publish
        }),
        ("(raw: enveloped / plain, consume)", |r| {
            r.raw_consume / r.raw_consume_plain
        }),
        ("(raw: bus.send's chunks / full chunks, consume)", |r| {
            r.raw_consume_sent / r.raw_consume
        }),
    ];
    for (name, of) in ratios {
        println!("  {name:<60} {:.2}", over(rounds, of));
    }
    match amqp {
        Ok(amqp) => {
            println!("framework stream publish / framework AMQP publish (goal ≥ 10):");
            println!(
                "  {:<60} {:.1}",
                "pipelined (median)",
                over(rounds, |r| r.send) / amqp
            );
            println!(
                "  {:<60} {:.1}",
                "(raw stream client / framework AMQP)",
                over(rounds, |r| r.raw_publish) / amqp
            );
        }
        Err(why) => println!("framework stream publish / framework AMQP publish: skipped ({why})"),
    }
}
