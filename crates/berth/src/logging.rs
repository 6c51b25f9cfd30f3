//! Logging with `tracing`, in registry:2's shapes: logrus-style text
//! (`time="..." level=info msg="..." key=value`) or JSON (`{"time","level","msg",...}`), with
//! `log.fields` added to every line so existing log pipelines keep parsing Berth's output.

use std::fmt;

use anyhow::Context;
use berth_config::{LogConfig, LogFormatter, LogLevel};
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Installs the global subscriber for `log`. Output goes to stderr, like registry:2.
pub fn init(log: &LogConfig) -> anyhow::Result<()> {
    let level = match log.level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
    };
    let fields = log
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or(Value::Null)))
        .collect();
    let format = RegistryFormat {
        json: !matches!(log.formatter, LogFormatter::Text),
        fields,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .event_format(format)
        .try_init()
        .map_err(|e| anyhow::anyhow!(e))
        .context("cannot install the logger")
}

/// Formats one event as a registry:2-style line.
struct RegistryFormat {
    json: bool,
    fields: Vec<(String, Value)>,
}

/// Collects an event's fields in order.
#[derive(Default)]
struct Collect(Vec<(String, Value)>);

impl Visit for Collect {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), Value::from(value)));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.push((field.name().to_owned(), Value::from(value)));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.push((field.name().to_owned(), Value::from(value)));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.push((field.name().to_owned(), Value::from(value)));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.push((field.name().to_owned(), Value::from(value)));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .push((field.name().to_owned(), Value::from(format!("{value:?}"))));
    }
}

impl<S, N> FormatEvent<S, N> for RegistryFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut collected = Collect::default();
        event.record(&mut collected);
        let time = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        let mut msg = String::new();
        let mut rest = Vec::new();
        for (k, v) in collected.0 {
            if k == "message" {
                msg = v
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string());
            } else {
                rest.push((k, v));
            }
        }
        if event.metadata().target() == "access" {
            rest.push(("type".to_owned(), Value::from("access")));
        }
        rest.extend(self.fields.iter().cloned());
        if self.json {
            let mut map = Map::new();
            map.insert("time".into(), Value::from(time));
            map.insert("level".into(), Value::from(level));
            map.insert("msg".into(), Value::from(msg));
            for (k, v) in rest {
                map.insert(k, v);
            }
            writeln!(writer, "{}", Value::Object(map))
        } else {
            write!(writer, "time=\"{time}\" level={level} msg={}", quote(&msg))?;
            for (k, v) in rest {
                let text = v
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string());
                write!(writer, " {k}={}", quote(&text))?;
            }
            writeln!(writer)
        }
    }
}

/// Quotes a logrus text value when it needs it.
fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._/:@".contains(c))
    {
        s.to_owned()
    } else {
        format!("{s:?}")
    }
}
