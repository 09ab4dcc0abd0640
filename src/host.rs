//! The machine a figure is measured on, as `nnc run` and `nnc bench` print
//! it.
//!
//! Why: the sittings whose figures docs/perf.md and docs/fidelity.md record
//! do not always get the same CPU. An AVX-512 product can run at twice
//! the rate on a core with 512-bit FMA units (AMD family 26) as on one
//! that splits them into 256-bit halves (family 25); NiN's training step
//! measured 56 images a second on the one and 30 on the other
//! (docs/perf.md), so an images-per-second figure without its CPU cannot
//! be compared with another one.

use std::fmt;

/// The host's CPU and the threads the cpu backend spreads its work over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// The CPU's name as the operating system reports it (`model name`),
    /// or the architecture where there is none.
    pub name: String,
    /// x86-64 family and model numbers, which tell CPU generations apart
    /// where the name does not (a virtual machine's "AMD EPYC").
    pub family_model: Option<(u32, u32)>,
    /// The widest vector instructions the CPU has among those the
    /// products use (AVX-512, else AVX2 with FMA, else SSE2).
    pub vectors: &'static str,
    pub threads: usize,
}

impl Host {
    /// This machine.
    pub fn this() -> Host {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let (name, family_model) = from_cpuinfo(&cpuinfo);
        Host {
            name: name.unwrap_or_else(|| std::env::consts::ARCH.to_string()),
            family_model,
            vectors: vectors(),
            threads: threads(),
        }
    }
}

/// The hardware threads the cpu backend spreads its work over: one pool
/// thread and one product part per thread (1 where the system cannot say).
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl fmt::Display for Host {
    /// `AMD EPYC (family 26 model 2, AVX-512), 2 threads`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (", self.name)?;
        if let Some((family, model)) = self.family_model {
            write!(f, "family {family} model {model}, ")?;
        }
        let s = if self.threads == 1 { "" } else { "s" };
        write!(f, "{}), {} thread{s}", self.vectors, self.threads)
    }
}

/// The first processor's name and its family and model numbers, from the
/// text of Linux's `/proc/cpuinfo`.
fn from_cpuinfo(text: &str) -> (Option<String>, Option<(u32, u32)>) {
    let first = text.split("\n\n").next().unwrap_or("");
    let field = |key: &str| {
        first.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    let name = field("model name").filter(|n| !n.is_empty());
    let number = |key: &str| field(key).and_then(|v| v.parse::<u32>().ok());
    let family_model = number("cpu family").zip(number("model"));
    (name, family_model)
}

fn vectors() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            "AVX-512"
        } else if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            "AVX2 and FMA"
        } else {
            "SSE2"
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        "NEON"
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        "scalar"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_first_processor_of_cpuinfo() {
        let text = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\n\
                    model name\t: AMD EPYC\nflags\t\t: fpu avx512f\n\n\
                    processor\t: 1\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: other\n";
        assert_eq!(
            from_cpuinfo(text),
            (Some("AMD EPYC".to_string()), Some((26, 2)))
        );
        let host = Host {
            name: "AMD EPYC".into(),
            family_model: Some((26, 2)),
            vectors: "AVX-512",
            threads: 2,
        };
        assert_eq!(
            host.to_string(),
            "AMD EPYC (family 26 model 2, AVX-512), 2 threads"
        );
    }

    #[test]
    fn an_arm_cpuinfo_has_neither_name_nor_family() {
        // Linux on ARM lists `CPU implementer` and `CPU part` instead.
        let text =
            "processor\t: 0\nBogoMIPS\t: 48.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n";
        assert_eq!(from_cpuinfo(text), (None, None));
        assert_eq!(from_cpuinfo(""), (None, None));
    }
}
