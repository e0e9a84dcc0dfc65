//! Where the eBPF programs' diagnostics go (`tracer attach --bpf-log`): `aya-log` reads
//! their messages out of its ring buffer (`AYA_LOGS`) and hands each to [`BpfLog`] as a
//! `log` record, which prints it on stderr as `tracer: bpf: LEVEL: message`, beside the
//! tracer's own `tracer: note: …` lines.
//!
//! A logger of its own rather than the process's `env_logger`: these messages were asked
//! for with the flag, so they are all printed whatever `RUST_LOG` says, in the tracer's
//! one-line format.
use std::io::{self, Write as _};

use aya::Ebpf;
use aya_log::EbpfLogger;

use super::ProbeError;

/// The reader of the programs' messages; [`EbpfLogger::flush`] prints those waiting.
pub(super) type Logger = EbpfLogger<BpfLog>;

/// Starts reading the messages of the programs of `ebpf` if `on` (taking their buffer,
/// `AYA_LOGS`, out of `ebpf`).
pub(super) fn start(ebpf: &mut Ebpf, on: bool) -> Result<Option<Logger>, ProbeError> {
    on.then(|| EbpfLogger::init_with_logger(ebpf, BpfLog))
        .transpose()
        .map_err(ProbeError::BpfLog)
}

/// Prints every record it gets on stderr.
pub(super) struct BpfLog;

impl log::Log for BpfLog {
    fn enabled(&self, _metadata: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let level = record.level().as_str().to_ascii_lowercase();
        // Nowhere to report a failed write to stderr; the trace goes on.
        let _ = writeln!(
            io::stderr().lock(),
            "tracer: bpf: {level}: {}",
            record.args()
        );
    }

    fn flush(&self) {
        let _ = io::stderr().flush();
    }
}
