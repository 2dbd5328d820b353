//! What the figures were measured on: cores, CPU, kernel, memory, the filesystem under the
//! database, and how long one `fdatasync` takes there (the floor under every durable commit).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// A description of the machine, printed at the top of the report.
pub struct Machine {
    /// Logical CPUs this process may use.
    pub cpus: usize,
    /// `model name` from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: String,
    /// `MemTotal` from `/proc/meminfo`.
    pub memory: String,
    /// Device and type of the filesystem holding the database directory.
    pub filesystem: String,
    /// Median and 99th percentile of a 4 KiB overwrite followed by `fdatasync`.
    pub fdatasync: (Duration, Duration),
}

impl Machine {
    /// Reads `/proc` and times `fdatasync` in `dir`.
    pub fn describe(dir: &Path) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Self {
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            cpu_model: field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|text| text.trim().to_owned())
                .unwrap_or_else(|_| "unknown".into()),
            memory: field(&meminfo, "MemTotal").unwrap_or_else(|| "unknown".into()),
            filesystem: filesystem_of(dir),
            fdatasync: time_fdatasync(dir),
        }
    }

    /// The lines of the report's header.
    pub fn print(&self) {
        println!("machine:");
        println!("  cpus:        {}", self.cpus);
        println!("  cpu model:   {}", self.cpu_model);
        println!("  kernel:      {}", self.kernel);
        println!("  memory:      {}", self.memory);
        println!("  database fs: {}", self.filesystem);
        println!(
            "  load:        {} (other work on the machine skews every figure)",
            load_average()
        );
        println!(
            "  fdatasync:   p50 {:.3} ms, p99 {:.3} ms (4 KiB overwrite + fdatasync, 200 times)",
            millis(self.fdatasync.0),
            millis(self.fdatasync.1)
        );
    }
}

/// The 1, 5 and 15 minute load averages from `/proc/loadavg`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".into())
}

fn field(text: &str, name: &str) -> Option<String> {
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(key, _)| key.trim() == name)
        .map(|(_, value)| value.trim().to_owned())
}

/// The `/proc/mounts` entry with the longest mount point that holds `dir`.
fn filesystem_of(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let device = fields.next()?;
            let mount_point = fields.next()?;
            let kind = fields.next()?;
            dir.starts_with(mount_point).then(|| {
                (
                    mount_point.len(),
                    format!("{kind} on {device} ({mount_point})"),
                )
            })
        })
        .max_by_key(|(length, _)| *length)
        .map_or_else(|| "unknown".into(), |(_, description)| description)
}

fn time_fdatasync(dir: &Path) -> (Duration, Duration) {
    let path = dir.join("fdatasync-probe");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .expect("the probe file can be created");
    let block = [0x5a_u8; 4096];
    file.write_all(&block)
        .expect("the probe file takes a write");
    file.sync_all().expect("the probe file can be synced");
    let mut samples: Vec<Duration> = (0..200)
        .map(|_| {
            let started = Instant::now();
            file.write_all_at(&block, 0)
                .expect("the probe file takes a write");
            file.sync_data().expect("the probe file can be synced");
            started.elapsed()
        })
        .collect();
    drop(file);
    let _ = std::fs::remove_file(path);
    samples.sort();
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

/// A duration in milliseconds, for printing.
pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
