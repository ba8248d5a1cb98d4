//! The program in the real node's test image. Its arguments are steps, run in order:
//!
//! | step | what it does |
//! |---|---|
//! | (none) | the sandbox ("pause") container: sleeps until SIGTERM, then exits 0 |
//! | `say TEXT` | prints TEXT on stdout |
//! | `sleep SECS` | sleeps |
//! | `exit CODE` | exits with CODE (137 is an app that exits 137, not a kill) |
//! | `hang` | sleeps forever |
//! | `ignore-term` | ignores SIGTERM from now on (the kubelet kills it at the end of the grace period) |
//! | `exit-on SIG` | from now on, signal SIG makes it say `got signal SIG` and exit 128+SIG (a stop signal's handler) |
//! | `alloc` | allocates and touches 1 MiB at a time until the kernel kills it |
//! | `raise SIG` | kills itself with signal SIG (as PID 1 of a container the kernel ignores it) |
//! | `kill-child SIG` | runs a child that kills itself with SIG, then exits 128+SIG, as a shell does |
//! | `oom-child` | runs a child that allocates until OOM-killed, says so, and goes on |
//! | `touch PATH` / `rm PATH` | creates or removes a file (for an exec probe) |
//! | `check PATH` | exits 0 when PATH exists, 1 otherwise (the exec probe itself) |
//! | `fail-first PATH CODE` | on a run that finds no PATH (the first, with PATH on a volume): makes it and exits CODE |
//! | `serve PORT` | answers HTTP on PORT in the background: 200 while `/tmp/healthy` exists, else 500 |
//! | `fill PATH MIB` | writes MIB MiB to PATH (an `emptyDir` past its `sizeLimit`) |
//!
//! A static binary (built with `-C target-feature=+crt-static`), so the image needs nothing else.

use std::io::{Read, Write};
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        pause();
    }
    let mut steps = args.iter();
    while let Some(step) = steps.next() {
        let mut arg = || steps.next().cloned().unwrap_or_else(|| fail(&format!("step {step} needs an argument")));
        match step.as_str() {
            "say" => say(&arg()),
            "sleep" => std::thread::sleep(Duration::from_secs_f64(number(&arg()))),
            "exit" => std::process::exit(number(&arg()) as i32),
            "hang" => loop {
                std::thread::sleep(Duration::from_secs(3600));
            },
            "ignore-term" => ignore(libc::SIGTERM),
            "exit-on" => exit_on(number(&arg()) as i32),
            "alloc" => alloc(),
            "raise" => raise(number(&arg()) as i32),
            "kill-child" => {
                let signal = number(&arg()) as i32;
                let status = child(&["raise", &signal.to_string()]);
                say(&format!("child ended: {status}"));
                std::process::exit(128 + signal);
            }
            "oom-child" => {
                let status = child(&["alloc"]);
                say(&format!("child ended: {status}"));
            }
            "touch" => {
                let path = arg();
                std::fs::write(&path, b"ok").unwrap_or_else(|e| fail(&format!("touch {path}: {e}")));
            }
            "rm" => {
                let _ = std::fs::remove_file(arg());
            }
            "check" => std::process::exit(if std::path::Path::new(&arg()).exists() { 0 } else { 1 }),
            "fail-first" => {
                let (path, code) = (arg(), number(&arg()) as i32);
                if !std::path::Path::new(&path).exists() {
                    std::fs::write(&path, b"ran").unwrap_or_else(|e| fail(&format!("fail-first {path}: {e}")));
                    say(&format!("first run: exiting {code}"));
                    std::process::exit(code);
                }
            }
            "serve" => serve(number(&arg()) as u16),
            "fill" => {
                let (path, mib) = (arg(), number(&arg()) as usize);
                fill(&path, mib);
            }
            other => fail(&format!("unknown step {other}")),
        }
    }
}

fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

fn fail(message: &str) -> ! {
    eprintln!("rw-test: {message}");
    std::process::exit(2)
}

fn number(text: &str) -> f64 {
    text.parse().unwrap_or_else(|_| fail(&format!("{text} is not a number")))
}

fn ignore(signal: i32) {
    // SAFETY: setting a signal's disposition to "ignore" has no handler to be unsafe in.
    unsafe {
        libc::signal(signal, libc::SIG_IGN);
    }
}

/// Blocks `signal` and waits for it on a thread of its own (no handler runs), which says so and
/// exits 128+`signal`: what a program handling its stop signal does.
fn exit_on(signal: i32) {
    // SAFETY: a signal set on the stack, blocked in this thread before the waiting thread starts
    // (which inherits the mask), so the signal is only ever taken by `sigwait`.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    std::thread::spawn(move || {
        let mut got = 0;
        // SAFETY: waits for a signal of the set blocked above.
        unsafe {
            libc::sigwait(&set, &mut got);
        }
        say(&format!("got signal {got}"));
        std::process::exit(128 + got);
    });
}

/// The sandbox container: sleeps until SIGTERM or SIGINT (as PID 1 it has no default action for
/// them, so they are waited for explicitly), then exits 0.
fn pause() -> ! {
    // SAFETY: a signal set on the stack, blocked and then waited for; no handler runs.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let mut signal = 0;
        libc::sigwait(&set, &mut signal);
    }
    std::process::exit(0)
}

fn alloc() -> ! {
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        // Touched, so the pages are charged to the container's memory cgroup.
        held.push(vec![1u8; 1 << 20]);
        if held.len().is_multiple_of(16) {
            say(&format!("allocated {} MiB", held.len()));
        }
    }
}

fn raise(signal: i32) -> ! {
    // SAFETY: sends a signal to this process.
    unsafe {
        libc::kill(libc::getpid(), signal);
    }
    std::thread::sleep(Duration::from_secs(5));
    fail(&format!("signal {signal} did not end the process (PID 1 of a container ignores it)"))
}

fn child(args: &[&str]) -> std::process::ExitStatus {
    std::process::Command::new("/proc/self/exe")
        .args(args)
        .status()
        .unwrap_or_else(|e| fail(&format!("cannot run a child: {e}")))
}

fn serve(port: u16) {
    let listener = std::net::TcpListener::bind(("0.0.0.0", port))
        .unwrap_or_else(|e| fail(&format!("cannot listen on {port}: {e}")));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            answer(stream);
        }
    });
}

fn answer(mut stream: std::net::TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = [0u8; 1024];
    let _ = stream.read(&mut request);
    let healthy = std::path::Path::new("/tmp/healthy").exists();
    let status = if healthy { "200 OK" } else { "500 Internal Server Error" };
    let body = if healthy { "ok\n" } else { "unhealthy\n" };
    let _ = write!(stream, "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
}

fn fill(path: &str, mib: usize) {
    let mut file = std::fs::File::create(path).unwrap_or_else(|e| fail(&format!("create {path}: {e}")));
    let chunk = vec![7u8; 1 << 20];
    for written in 1..=mib {
        if let Err(e) = file.write_all(&chunk).and_then(|()| file.sync_data()) {
            fail(&format!("write {path} at {written} MiB: {e}"));
        }
    }
    say(&format!("wrote {mib} MiB to {path}"));
}
