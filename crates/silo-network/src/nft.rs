//! One way to run an nftables transaction: in-process through libnftables
//! (Debian's `libnftables1`, which the `nftables` package depends on),
//! loaded with `dlopen` so building silo needs no `-dev` package; the `nft`
//! program when the library is missing. A process costs ~18 ms, which the
//! container start path (port mappings) cannot afford; the library costs
//! well under one. Each call is one script, hence one kernel transaction,
//! run in the calling thread's network namespace (a context per call, so a
//! thread that moved namespaces never reuses a socket from another).

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// A script that drops table `family name` if it is there (create, then
/// delete: idempotent on every nft version).
pub fn drop_table(family: &str, name: &str) -> String {
    format!("table {family} {name}\ndelete table {family} {name}\n")
}

/// A script that replaces table `family name` with one holding `body` (its
/// sets, maps and chains), in one transaction.
pub fn replace_table(family: &str, name: &str, body: &str) -> String {
    format!(
        "{}table {family} {name} {{\n{body}}}\n",
        drop_table(family, name)
    )
}

/// Running a script failed.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("running nft (install Debian's nftables): {0}")]
    Spawn(std::io::Error),
    #[error("{0}")]
    Refused(String),
}

/// libnftables' output flag for JSON (`NFT_CTX_OUTPUT_JSON`).
const OUTPUT_JSON: c_uint = 1 << 4;

type CtxNew = unsafe extern "C" fn(c_uint) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(*mut c_void);
type Buffer = unsafe extern "C" fn(*mut c_void) -> c_int;
type GetBuffer = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type SetFlags = unsafe extern "C" fn(*mut c_void, c_uint);
type Run = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

/// The library's entry points.
struct Lib {
    ctx_new: CtxNew,
    ctx_free: CtxFree,
    buffer_output: Buffer,
    buffer_error: Buffer,
    get_output: GetBuffer,
    get_error: GetBuffer,
    set_output_flags: SetFlags,
    run: Run,
}

fn lib() -> Option<&'static Lib> {
    static LIB: OnceLock<Option<Lib>> = OnceLock::new();
    LIB.get_or_init(|| {
        if std::env::var_os("SILO_NFT_PROCESS").is_some() {
            return None;
        }
        // SAFETY: dlopen with a constant, NUL-terminated name; the handle
        // is never closed, so the symbols stay valid for the process.
        let h = unsafe { libc::dlopen(c"libnftables.so.1".as_ptr(), libc::RTLD_NOW) };
        if h.is_null() {
            return None;
        }
        let sym = |name: &CStr| {
            // SAFETY: dlsym on a live handle with a NUL-terminated name.
            let p = unsafe { libc::dlsym(h, name.as_ptr()) };
            (!p.is_null()).then_some(p)
        };
        // SAFETY: each pointer is the named libnftables function, whose C
        // signature (libnftables.h, stable since 0.9) the type spells out.
        unsafe {
            Some(Lib {
                ctx_new: std::mem::transmute::<*mut c_void, CtxNew>(sym(c"nft_ctx_new")?),
                ctx_free: std::mem::transmute::<*mut c_void, CtxFree>(sym(c"nft_ctx_free")?),
                buffer_output: std::mem::transmute::<*mut c_void, Buffer>(sym(
                    c"nft_ctx_buffer_output",
                )?),
                buffer_error: std::mem::transmute::<*mut c_void, Buffer>(sym(
                    c"nft_ctx_buffer_error",
                )?),
                get_output: std::mem::transmute::<*mut c_void, GetBuffer>(sym(
                    c"nft_ctx_get_output_buffer",
                )?),
                get_error: std::mem::transmute::<*mut c_void, GetBuffer>(sym(
                    c"nft_ctx_get_error_buffer",
                )?),
                set_output_flags: std::mem::transmute::<*mut c_void, SetFlags>(sym(
                    c"nft_ctx_output_set_flags",
                )?),
                run: std::mem::transmute::<*mut c_void, Run>(sym(c"nft_run_cmd_from_buffer")?),
            })
        }
    })
    .as_ref()
}

/// Whether scripts run in-process (for the docs and the bench).
pub fn in_process() -> bool {
    lib().is_some()
}

/// Runs `script` as one transaction; returns what it printed (JSON when
/// `json`).
pub fn run(script: &str, json: bool) -> Result<String, NftError> {
    match lib() {
        Some(l) => run_lib(l, script, json),
        None => run_process(script, json),
    }
}

fn run_lib(l: &Lib, script: &str, json: bool) -> Result<String, NftError> {
    let text = CString::new(script).map_err(|_| NftError::Refused("script holds a NUL".into()))?;
    // SAFETY: a fresh context used by this thread only and freed below;
    // the buffers it returns live until the free, and are copied first.
    unsafe {
        let ctx = (l.ctx_new)(0);
        if ctx.is_null() {
            return Err(NftError::Refused("nft_ctx_new failed".into()));
        }
        (l.buffer_output)(ctx);
        (l.buffer_error)(ctx);
        if json {
            (l.set_output_flags)(ctx, OUTPUT_JSON);
        }
        let rc = (l.run)(ctx, text.as_ptr());
        let copy = |p: *const c_char| {
            if p.is_null() {
                String::new()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        let out = copy((l.get_output)(ctx));
        let err = copy((l.get_error)(ctx));
        (l.ctx_free)(ctx);
        if rc == 0 {
            Ok(out)
        } else {
            Err(NftError::Refused(err.trim().to_string()))
        }
    }
}

fn run_process(script: &str, json: bool) -> Result<String, NftError> {
    let mut cmd = Command::new("nft");
    if json {
        cmd.arg("-j");
    }
    let mut child = cmd
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        if let Err(e) = stdin.write_all(script.as_bytes()) {
            drop(stdin);
            let _ = child.wait();
            return Err(NftError::Spawn(e));
        }
    }
    let out = child.wait_with_output().map_err(NftError::Spawn)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(NftError::Refused(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}
