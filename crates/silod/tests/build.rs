//! Image builds through the docker CLI's classic builder (`POST /build`):
//! a multi-stage Dockerfile with ARG/ENV substitution, WORKDIR, USER,
//! COPY (also --from a stage), ADD of a local tar, .dockerignore,
//! HEALTHCHECK and the rest of the config; the cache; and every bad input,
//! each a clear error naming the line that leaves no container and no
//! image of its own behind.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use silo_testsupport::{stderr, stdout, Cli, Daemon};
use std::path::Path;

const SILOD: &str = env!("CARGO_BIN_EXE_silod");

const DOCKERFILE: &str = r#"ARG BASE=busybox
FROM ${BASE} AS base
ARG GREETING=hi
ENV APP=/app NAME="silo build"
WORKDIR $APP
COPY src/ ./
ADD files.tar /unpacked/
RUN echo "$GREETING from $NAME ${MISSING:-by default}" > greeting
USER 1000:1000
EXPOSE 8080/tcp 53/udp
VOLUME /data
LABEL org.example.tier=back
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD true
ENTRYPOINT ["cat"]
CMD ["greeting"]

FROM busybox
COPY --from=base /app/greeting /g
RUN cat /g
"#;

fn context() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir_all(p.join("src/sub")).unwrap();
    std::fs::write(p.join("src/a.txt"), "hello\n").unwrap();
    std::fs::write(p.join("src/sub/b.txt"), "deep\n").unwrap();
    std::fs::write(p.join("src/debug.log"), "secret\n").unwrap();
    std::fs::write(p.join(".dockerignore"), "**/*.log\n").unwrap();
    std::fs::write(p.join("Dockerfile"), DOCKERFILE).unwrap();
    // files.tar: one file, for ADD's auto-extraction.
    let mut t = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    h.set_cksum();
    t.append_data(&mut h, "inner.txt", &b"tar\n"[..]).unwrap();
    std::fs::write(p.join("files.tar"), t.into_inner().unwrap()).unwrap();
    dir
}

fn build(d: &Daemon, args: &[&str]) -> std::process::Output {
    let mut cmd = d.command();
    cmd.env("DOCKER_BUILDKIT", "0").arg("build").args(args);
    cmd.output().unwrap()
}

fn image_count(d: &Daemon) -> usize {
    d.ok(&["images", "-aq"]).lines().count()
}

#[test]
fn a_multi_stage_build_with_the_cache_and_its_config() {
    let d = Daemon::start_in_netns(Path::new(SILOD), Cli::Docker);
    d.import_busybox();
    let ctx = context();
    let dir = ctx.path().to_str().unwrap();
    let out = build(&d, &["-t", "built:1", "--build-arg", "GREETING=hello", dir]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Step 19/19 : RUN cat /g"), "{text}");
    assert!(text.contains("Successfully tagged built:1"), "{text}");
    assert_eq!(
        d.ok(&["run", "--rm", "built:1", "cat", "/g"]),
        "hello from silo build by default\n"
    );
    // The first stage: its config, files, .dockerignore and ADD.
    let out = build(&d, &["--target", "base", "-t", "built:base", dir]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        d.ok(&["run", "--rm", "built:base"]),
        "hi from silo build by default\n"
    );
    let files = d.ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        "built:base",
        "-c",
        "id -u; ls /app; ls /app/sub; cat /unpacked/inner.txt; ls /app | grep -c log || true",
    ]);
    assert_eq!(files, "1000\na.txt\ngreeting\nsub\nb.txt\ntar\n0\n");
    let cfg: serde_json::Value =
        serde_json::from_str(&d.ok(&["inspect", "-f", "{{json .Config}}", "built:base"])).unwrap();
    assert_eq!(cfg["User"], "1000:1000");
    assert_eq!(cfg["WorkingDir"], "/app");
    assert_eq!(cfg["Entrypoint"], serde_json::json!(["cat"]));
    assert_eq!(cfg["Cmd"], serde_json::json!(["greeting"]));
    assert_eq!(cfg["StopSignal"], "SIGINT");
    assert_eq!(cfg["Labels"]["org.example.tier"], "back");
    assert!(
        cfg["ExposedPorts"].get("8080/tcp").is_some()
            && cfg["ExposedPorts"].get("53/udp").is_some()
    );
    assert!(cfg["Volumes"].get("/data").is_some());
    assert!(cfg["Env"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("NAME=silo build")));
    assert_eq!(
        cfg["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "true"])
    );
    assert_eq!(cfg["Healthcheck"]["Interval"], 5_000_000_000u64);
    assert_eq!(cfg["Healthcheck"]["Retries"], 2);

    // The same build again comes from the cache, step for step.
    let out = build(&d, &["-t", "built:2", "--build-arg", "GREETING=hello", dir]);
    assert!(out.status.success(), "{}", stderr(&out));
    let again = stdout(&out);
    assert_eq!(again.matches("Using cache").count(), 16, "{again}");
    let id = |t: &str| d.ok(&["inspect", "-f", "{{.Id}}", t]);
    assert_eq!(id("built:1"), id("built:2"));
    // A changed file misses from its COPY on; --no-cache misses everywhere.
    std::fs::write(ctx.path().join("src/a.txt"), "changed\n").unwrap();
    let out = build(&d, &["-t", "built:3", "--build-arg", "GREETING=hello", dir]);
    let changed = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    // ARG, ENV and WORKDIR hit; from the COPY on the first stage misses; the
    // second stage copies an unchanged greeting, so it hits again.
    assert_eq!(changed.matches("Using cache").count(), 5, "{changed}");
    let out = build(&d, &["--no-cache", "-t", "built:4", dir]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("Using cache"));
    // No intermediate container stays.
    assert_eq!(d.ok(&["ps", "-aq"]).trim(), "");
    // Intermediate images show with -a only; removing an image takes its
    // untagged build parents with it.
    // (As with dockerd's classic builder, the last image of an earlier
    // stage has no child and stays listed, untagged.)
    let top = d.ok(&["images", "-q"]).lines().count();
    assert!(
        top + 20 < image_count(&d),
        "intermediate images are listed without -a"
    );
    let parent = d.ok(&["image", "inspect", "-f", "{{.Parent}}", "built:4"]);
    assert!(parent.trim().starts_with("sha256:"), "{parent}");
    let all_before = image_count(&d);
    d.ok(&["rmi", "built:4"]);
    assert!(
        image_count(&d) < all_before - 1,
        "the intermediate images of built:4 stayed"
    );
}

#[test]
fn bad_builds_say_what_and_where_and_leave_nothing() {
    let d = Daemon::start_in_netns(Path::new(SILOD), Cli::Docker);
    d.import_busybox();
    let cases: [(&str, &str); 8] = [
        (
            "FROM busybox\nENV A=\"unterminated\n",
            "line 2: unterminated quote",
        ),
        (
            "FROM busybox\nFROB x\n",
            "line 2: unknown instruction: FROB",
        ),
        (
            "FROM busybox\nRUN echo out && exit 3\n",
            "returned a non-zero code: 3",
        ),
        (
            "FROM busybox\nCOPY nothere /x\n",
            "line 2: COPY failed: file not found",
        ),
        (
            "FROM busybox\nCOPY ../outside /x\n",
            "line 2: ../outside: forbidden path outside the build context",
        ),
        (
            "FROM nosuchimage\n",
            "line 1: FROM nosuchimage: no such image",
        ),
        (
            "FROM busybox\nCOPY --from=nostage /a /b\n",
            "line 2: --from=nostage",
        ),
        (
            "FROM busybox\nADD http://example.com/x /x\n",
            "remote URLs are not supported",
        ),
    ];
    let images = image_count(&d);
    for (df, want) in cases {
        let ctx = tempfile::tempdir().unwrap();
        std::fs::write(ctx.path().join("Dockerfile"), df).unwrap();
        let out = build(&d, &["-t", "bad:1", ctx.path().to_str().unwrap()]);
        assert!(!out.status.success(), "{df} built");
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(all.contains(want), "{df}: {all}");
        assert_eq!(
            d.ok(&["ps", "-aq"]).trim(),
            "",
            "{df}: a container was left"
        );
        assert_eq!(image_count(&d), images, "{df}: an image was left");
    }
    // The RUN's output was shown before the error.
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nRUN echo visible-output; false\n",
    )
    .unwrap();
    let out = build(&d, &[ctx.path().to_str().unwrap()]);
    assert!(stdout(&out).contains("visible-output"), "{}", stdout(&out));
    // A context that is not a tar, and a Dockerfile outside the context.
    let (head, body) = d.http_body("POST", "/build", "not a tar at all");
    assert!(head.starts_with("HTTP/1.1 400"), "{head}\n{body}");
    assert!(body.contains("not a tar archive"), "{body}");
    let mut t = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(13);
    h.set_mode(0o644);
    h.set_cksum();
    t.append_data(&mut h, "Dockerfile", &b"FROM busybox\n"[..])
        .unwrap();
    let tarball = t.into_inner().unwrap();
    let mut s = std::os::unix::net::UnixStream::connect(d.socket()).unwrap();
    use std::io::{Read, Write};
    write!(
        s,
        "POST /build?dockerfile=../../etc/passwd HTTP/1.1\r\nHost: silod\r\nConnection: close\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
        tarball.len()
    )
    .unwrap();
    s.write_all(&tarball).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(raw.contains("outside the build context"), "{raw}");
    // A parameter the builder cannot honour is refused by name.
    let (head, body) = d.http_body(
        "POST",
        "/build?ulimits=%5B%7B%22Name%22%3A%22nofile%22%2C%22Soft%22%3A1%2C%22Hard%22%3A1%7D%5D",
        "",
    );
    assert!(head.starts_with("HTTP/1.1 400"), "{head}\n{body}");
    assert!(body.contains("ulimits"), "{body}");
    assert_eq!(image_count(&d), images);
}

#[test]
fn onbuild_triggers_and_the_escape_directive() {
    let d = Daemon::start_in_netns(Path::new(SILOD), Cli::Docker);
    d.import_busybox();
    let base = tempfile::tempdir().unwrap();
    std::fs::write(
        base.path().join("Dockerfile"),
        "FROM busybox\nONBUILD RUN echo triggered > /trigger\n",
    )
    .unwrap();
    let out = build(&d, &["-t", "withtrigger", base.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let onbuild = d.ok(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config.OnBuild}}",
        "withtrigger",
    ]);
    assert!(onbuild.contains("RUN echo triggered"), "{onbuild}");
    let child = tempfile::tempdir().unwrap();
    std::fs::write(
        child.path().join("Dockerfile"),
        "# escape=`\nFROM withtrigger\nRUN echo one `\n  two > /joined\n",
    )
    .unwrap();
    let out = build(&d, &["-t", "child", child.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(
        d.ok(&["run", "--rm", "child", "cat", "/trigger", "/joined"]),
        "triggered\none two\n"
    );
    // Triggers run once: the child does not carry them on.
    let onbuild = d.ok(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config.OnBuild}}",
        "child",
    ]);
    assert_eq!(onbuild.trim(), "null");
}

#[test]
fn copies_land_through_the_images_links_and_into_its_directories() {
    let d = Daemon::start_in_netns(Path::new(SILOD), Cli::Docker);
    d.import_busybox();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("a.txt"), "a\n").unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nRUN mkdir -p /real && ln -s /real /linked\nCOPY a.txt /linked/sub/\nCOPY a.txt /etc\nWORKDIR /linked/w\n",
    )
    .unwrap();
    let out = build(&d, &["-t", "links", ctx.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let got = d.ok(&[
        "run", "--rm", "links", "sh", "-c",
        "readlink /linked; cat /real/sub/a.txt /etc/a.txt; test -f /etc/passwd && echo etc-kept; test -d /real/w && echo workdir",
    ]);
    assert_eq!(got, "/real\na\na\netc-kept\nworkdir\n");
}
