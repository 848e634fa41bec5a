use super::read::parse_plist;
use super::*;
use crate::import::draft::Dropped;

const HEAD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n<plist version=\"1.0\">\n<dict>\n";
const TAIL: &str = "</dict>\n</plist>\n";

/// A job plist: `body` goes inside the top `<dict>`, from line 5.
fn plist(body: &str) -> String {
    format!("{HEAD}{body}{TAIL}")
}

fn import_texts(files: &[(&str, &[u8])]) -> Result<Draft, ImportError> {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap_or_else(|e| panic!("write: {e}"));
    }
    let cx = Context {
        env: Default::default(),
        cwd: dir.path().to_path_buf(),
    };
    let names: Vec<PathBuf> = files.iter().map(|(n, _)| PathBuf::from(n)).collect();
    import(&names, &cx)
}

fn import_one(body: &str) -> Draft {
    let text = plist(body);
    import_texts(&[("job.plist", text.as_bytes())]).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn dropped(draft: &Draft) -> Vec<String> {
    draft.dropped.iter().map(Dropped::to_string).collect()
}

const AGENT: &str = "<key>Label</key><string>com.example.agent</string>\n<key>ProgramArguments</key><array><string>/bin/sleep</string><string>1000</string></array>\n";

#[test]
fn a_simple_agent_is_one_program() {
    let draft = import_one(&format!("{AGENT}<key>RunAtLoad</key><true/>\n"));
    assert_eq!(draft.programs.len(), 1);
    let p = &draft.programs[0];
    assert_eq!(p.name, "com.example.agent");
    assert_eq!(p.origin, Some(Origin::new("job.plist", 4)));
    assert_eq!(p.command, ["/bin/sleep", "1000"]);
    assert_eq!(p.restart, Some(Restart::Never));
    assert_eq!(p.autostart, None);
    assert!(
        p.notes
            .iter()
            .any(|n| n.contains("does not restart this job")),
        "{:?}",
        p.notes
    );
    assert!(draft.dropped.is_empty(), "{:?}", dropped(&draft));
}

#[test]
fn keep_alive_and_run_at_load_become_restart_and_autostart() {
    let t = "<true/>";
    let f = "<false/>";
    let cases: Vec<(String, Restart, Option<bool>, Vec<&str>)> = vec![
        (String::new(), Restart::Never, Some(false), vec![]),
        (format!("<key>RunAtLoad</key>{t}"), Restart::Never, None, vec![]),
        (format!("<key>KeepAlive</key>{t}"), Restart::Always, None, vec![]),
        (format!("<key>KeepAlive</key>{t}<key>RunAtLoad</key>{f}"), Restart::Always, None, vec![]),
        (format!("<key>KeepAlive</key>{f}<key>RunAtLoad</key>{t}"), Restart::Never, None, vec![]),
        ("<key>KeepAlive</key><dict/>".to_string(), Restart::Never, Some(false), vec![]),
        // SuccessfulExit implies RunAtLoad.
        (format!("<key>KeepAlive</key><dict><key>SuccessfulExit</key>{f}</dict>"), Restart::OnFailure, None, vec![]),
        (format!("<key>KeepAlive</key><dict><key>SuccessfulExit</key>{t}</dict>"), Restart::Never, None, vec!["KeepAlive.SuccessfulExit"]),
        (format!("<key>KeepAlive</key><dict><key>Crashed</key>{t}</dict>"), Restart::OnFailure, Some(false), vec![]),
        (format!("<key>KeepAlive</key><dict><key>Crashed</key>{t}</dict><key>RunAtLoad</key>{t}"), Restart::OnFailure, None, vec![]),
        (format!("<key>KeepAlive</key><dict><key>Crashed</key>{f}</dict>"), Restart::Never, Some(false), vec!["KeepAlive.Crashed"]),
        (format!("<key>KeepAlive</key><dict><key>SuccessfulExit</key>{f}<key>Crashed</key>{f}</dict>"), Restart::Always, None, vec![]),
        (format!("<key>KeepAlive</key><dict><key>SuccessfulExit</key>{f}<key>Crashed</key>{t}</dict>"), Restart::OnFailure, None, vec![]),
        (format!("<key>KeepAlive</key><dict><key>SuccessfulExit</key>{t}<key>Crashed</key>{t}</dict>"), Restart::OnFailure, None, vec!["KeepAlive.SuccessfulExit"]),
        (format!("<key>KeepAlive</key><dict><key>SuccessfulExit</key>{t}<key>Crashed</key>{f}</dict>"), Restart::Never, None, vec!["KeepAlive.SuccessfulExit", "KeepAlive.Crashed"]),
        (
            format!("<key>KeepAlive</key><dict><key>NetworkState</key>{t}<key>PathState</key><dict><key>/tmp/go</key>{t}</dict><key>OtherJobEnabled</key><dict/><key>AfterInitialDemand</key>{t}<key>Sometimes</key>{t}</dict>"),
            Restart::Never,
            Some(false),
            vec!["KeepAlive.NetworkState", "KeepAlive.PathState", "KeepAlive.OtherJobEnabled", "KeepAlive.AfterInitialDemand", "KeepAlive.Sometimes"],
        ),
        (format!("<key>OnDemand</key>{f}"), Restart::Always, None, vec![]),
        (format!("<key>OnDemand</key>{t}<key>RunAtLoad</key>{t}"), Restart::Never, None, vec![]),
        (format!("<key>OnDemand</key>{f}<key>KeepAlive</key>{f}"), Restart::Never, Some(false), vec![]),
        (format!("<key>KeepAlive</key>{t}<key>Disabled</key>{t}"), Restart::Always, Some(false), vec![]),
        (format!("<key>RunAtLoad</key>{t}<key>Disabled</key>{f}"), Restart::Never, None, vec![]),
    ];
    for (body, restart, autostart, lost) in cases {
        let draft = import_one(&format!("{AGENT}{body}\n"));
        let p = &draft.programs[0];
        assert_eq!(p.restart, Some(restart), "{body}");
        assert_eq!(p.autostart, autostart, "{body}");
        let keys: Vec<&str> = draft.dropped.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, lost, "{body}");
        assert!(
            draft
                .dropped
                .iter()
                .all(|d| d.origin.line == 7 && d.program.as_deref() == Some("com.example.agent")),
            "{body}: {:?}",
            dropped(&draft)
        );
    }
}

#[test]
fn program_and_program_arguments_become_argv() {
    let cases: [(&str, &[&str], bool); 5] = [
        ("<key>ProgramArguments</key><array><string>node</string><string>app.js</string></array>", &["node", "app.js"], false),
        ("<key>Program</key><string>/usr/local/bin/web</string>", &["/usr/local/bin/web"], false),
        ("<key>Program</key><string>/bin/web</string><key>ProgramArguments</key><array><string>/bin/web</string><string>-v</string></array>", &["/bin/web", "-v"], false),
        ("<key>Program</key><string>/bin/web</string><key>ProgramArguments</key><array><string>web-worker</string><string>-v</string></array>", &["/bin/web", "-v"], true),
        ("<key>Program</key><string>/bin/web</string><key>ProgramArguments</key><array/>", &["/bin/web"], false),
    ];
    for (body, argv, noted) in cases {
        let draft = import_one(&format!("<key>Label</key><string>a</string>\n{body}\n"));
        let p = &draft.programs[0];
        assert_eq!(p.command, argv, "{body}");
        let note = p.notes.iter().any(|n| n.contains("argv[0] \"web-worker\""));
        assert_eq!(note, noted, "{body}: {:?}", p.notes);
    }
}

#[test]
fn settings_map_to_their_keys() {
    let draft = import_one(&format!(
        "{AGENT}<key>KeepAlive</key><true/>
<key>EnvironmentVariables</key>
<dict>
<key>PATH</key><string>/usr/local/bin:/usr/bin:/bin</string>
<key>TEMPLATE</key><string>${{HOME}}/x</string>
</dict>
<key>WorkingDirectory</key><string>/srv/app</string>
<key>UserName</key><string>daemon</string>
<key>GroupName</key><string>daemon</string>
<key>InitGroups</key><true/>
<key>Umask</key><integer>18</integer>
<key>ThrottleInterval</key><integer>5</integer>
<key>ExitTimeOut</key><integer>30</integer>
<key>ServiceDescription</key><string>The example agent</string>
"
    ));
    assert!(draft.dropped.is_empty(), "{:?}", dropped(&draft));
    let p = &draft.programs[0];
    let env: Vec<(&str, &str)> = p
        .environment
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("PATH", "/usr/local/bin:/usr/bin:/bin"),
            ("TEMPLATE", "${HOME}/x")
        ]
    );
    assert_eq!(p.directory.as_deref(), Some("/srv/app"));
    assert_eq!(p.user.as_deref(), Some("daemon"));
    assert_eq!(p.group.as_deref(), Some("daemon"));
    assert_eq!(p.umask, Some(0o22));
    assert_eq!(p.backoff, Some(Backoff::fixed(Duration::from_secs(5))));
    assert_eq!(p.stop_timeout, Some(Duration::from_secs(30)));
    assert_eq!(p.restart, Some(Restart::Always));
    assert_eq!(p.log, None);
}

#[test]
fn zero_exit_timeout_and_init_groups_false_are_dropped() {
    let draft = import_one(&format!(
        "{AGENT}<key>ExitTimeOut</key><integer>0</integer>\n<key>InitGroups</key><false/>\n"
    ));
    assert_eq!(
        dropped(&draft),
        [
            "job.plist:7: ExitTimeOut: 0 means launchd never sends SIGKILL; kelpie always does after stop_timeout",
            "job.plist:8: InitGroups: kelpie always gives the program its user's supplementary groups (getgrouplist)",
        ]
    );
    assert_eq!(draft.programs[0].stop_timeout, None);
}

#[test]
fn standard_out_and_error_become_one_log_file() {
    let out = "<key>StandardOutPath</key><string>/var/log/a.log</string>";
    let err_same = "<key>StandardErrorPath</key><string>/var/log/a.log</string>";
    let err_other = "<key>StandardErrorPath</key><string>/var/log/a.err</string>";
    let cases: Vec<(String, Option<&str>, Vec<&str>)> = vec![
        (String::new(), None, vec![]),
        (format!("{out}{err_same}"), Some("/var/log/a.log"), vec![]),
        (format!("{out}\n{err_other}"), Some("/var/log/a.log"), vec!["StandardErrorPath"]),
        (out.to_string(), Some("/var/log/a.log"), vec![]),
        (err_other.to_string(), Some("/var/log/a.err"), vec![]),
        (
            "<key>WorkingDirectory</key><string>/srv/app</string><key>StandardOutPath</key><string>logs/out.log</string>".to_string(),
            Some("/srv/app/logs/out.log"),
            vec![],
        ),
        (
            "<key>StandardOutPath</key><string>tmp/out.log</string>".to_string(),
            Some("/tmp/out.log"),
            vec![],
        ),
    ];
    for (body, file, lost) in cases {
        let draft = import_one(&format!("{AGENT}{body}\n"));
        let p = &draft.programs[0];
        let got = match &p.log {
            None => None,
            Some(Log::File {
                file,
                max_size: None,
                keep: None,
            }) => Some(file.as_str()),
            Some(other) => panic!("{body}: {other:?}"),
        };
        assert_eq!(got, file, "{body}");
        let keys: Vec<&str> = draft.dropped.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, lost, "{body}");
    }
    let draft = import_one(&format!("{AGENT}{out}\n{err_other}\n"));
    assert_eq!(
        dropped(&draft),
        ["job.plist:8: StandardErrorPath: kelpie keeps one log per program: stderr goes to StandardOutPath's file, /var/log/a.log"]
    );
    let draft = import_one(&format!(
        "{AGENT}<key>WorkingDirectory</key><string>srv</string>\n"
    ));
    assert_eq!(draft.programs[0].directory.as_deref(), Some("/srv"));
}

#[test]
fn keys_without_an_equivalent_are_dropped_with_their_line() {
    let draft = import_one(&format!(
        "{AGENT}<key>StartCalendarInterval</key>
<dict>
<key>Hour</key><integer>3</integer>
<key>Minute</key><integer>15</integer>
</dict>
<key>Nice</key><integer>5</integer>
<key>LowPriorityIO</key><false/>
<key>AbandonProcessGroup</key><true/>
<key>Nice2</key><integer>0</integer>
<key>HopefullyExitsLast</key><true/>
"
    ));
    assert_eq!(
        dropped(&draft),
        [
            "job.plist:7: StartCalendarInterval: kelpie has no calendar timers; run the job from cron or a systemd timer",
            "job.plist:12: Nice: kelpie sets no scheduling priority; run the command under `nice -n N`",
            "job.plist:14: AbandonProcessGroup: kelpie stops a program's whole process group; it cannot leave the rest of the group running",
            "job.plist:15: Nice2: not a launchd.plist(5) key kelpie knows",
        ]
    );
    let draft = import_one(&format!("{AGENT}<key>Nice</key><integer>0</integer>\n"));
    assert!(draft.dropped.is_empty(), "{:?}", dropped(&draft));
}

#[test]
fn bad_input_is_one_line_at_its_line() {
    let job = |body: &str| plist(&format!("{AGENT}{body}\n"));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"hello\n".to_vec(), "job.plist:1: not a property list: expected XML (<?xml …><plist>) or a binary plist"),
        (b"{ Label = x; }\n".to_vec(), "job.plist:1: not a property list: expected XML (<?xml …><plist>) or a binary plist (an old-style ASCII plist? `plutil -convert xml1 FILE` turns it into XML)"),
        (b"<plist>\n<dict>\n<key>A</key><string>x</dict>\n</plist>\n".to_vec(), "job.plist:3: not a valid XML property list: invalid XML"),
        (b"<plist>\n<dict>\n<key>A</key>\n<integer>ten</integer>\n</dict></plist>\n".to_vec(), "job.plist:4: not a valid XML property list: <integer> holds something that is not an integer"),
        (b"<plist>\n<dict>\n<key>A</key>\n</dict></plist>\n".to_vec(), "job.plist:3: not a valid XML property list: key \"A\" has no value"),
        (b"<html></html>\n".to_vec(), "job.plist:1: not a valid XML property list: an element a property list does not have"),
        (b"<plist>\n<array><string>x</string></array>\n</plist>\n".to_vec(), "job.plist:2: the top of a launchd plist must be a dictionary, found an array"),
        (plist("<key>Program</key><string>/bin/true</string>\n").into_bytes(), "job.plist:4: no Label: launchd needs one to name the job"),
        (plist("<key>Label</key><integer>1</integer>\n").into_bytes(), "job.plist:5: Label must be a string, found an integer"),
        (plist("<key>Label</key><string></string>\n").into_bytes(), "job.plist:5: Label is empty"),
        (plist("<key>Label</key><string>...</string><key>Program</key><string>/bin/true</string>\n").into_bytes(), "job.plist:5: Label \"...\" has nothing kelpie can use as a program name"),
        (plist("<key>Label</key><string>a</string>\n").into_bytes(), "job.plist:4: neither Program nor ProgramArguments: nothing to run"),
        (plist("<key>Label</key><string>a</string>\n<key>BundleProgram</key><string>Contents/MacOS/a</string>\n").into_bytes(), "job.plist:4: neither Program nor ProgramArguments: nothing to run (BundleProgram is resolved by launchd inside an app bundle; give the executable's path as Program)"),
        (plist("<key>Label</key><string>a</string>\n<key>ProgramArguments</key><string>/bin/true</string>\n").into_bytes(), "job.plist:6: ProgramArguments must be an array of strings, found a string"),
        (plist("<key>Label</key><string>a</string>\n<key>ProgramArguments</key><array><string>/bin/sleep</string><integer>1</integer></array>\n").into_bytes(), "job.plist:6: ProgramArguments item 2 must be a string, found an integer"),
        (plist("<key>Label</key><string>a</string>\n<key>ProgramArguments</key><array/>\n").into_bytes(), "job.plist:6: ProgramArguments is empty and there is no Program"),
        (plist("<key>Label</key><string>a</string>\n<key>Program</key><true/>\n").into_bytes(), "job.plist:6: Program must be a string, found a boolean"),
        (job("<key>KeepAlive</key><string>yes</string>").into_bytes(), "job.plist:7: KeepAlive must be a boolean or a dictionary, found a string"),
        (job("<key>KeepAlive</key>\n<dict><key>SuccessfulExit</key><integer>0</integer></dict>").into_bytes(), "job.plist:8: KeepAlive.SuccessfulExit must be a boolean, found an integer"),
        (job("<key>RunAtLoad</key><string>true</string>").into_bytes(), "job.plist:7: RunAtLoad must be a boolean, found a string"),
        (job("<key>EnvironmentVariables</key><array/>").into_bytes(), "job.plist:7: EnvironmentVariables must be a dictionary of strings, found an array"),
        (job("<key>EnvironmentVariables</key><dict>\n<key>PORT</key><integer>80</integer></dict>").into_bytes(), "job.plist:8: EnvironmentVariables.PORT must be a string, found an integer"),
        (job("<key>EnvironmentVariables</key><dict>\n<key>A=B</key><string>x</string></dict>").into_bytes(), "job.plist:8: invalid environment variable name \"A=B\""),
        (job("<key>Umask</key><integer>600</integer>").into_bytes(), "job.plist:7: Umask 600 is not a umask: expected 0 to 511 (octal 000 to 777)"),
        (job("<key>Umask</key><string>022</string>").into_bytes(), "job.plist:7: Umask must be an integer (the mask in decimal, 18 for 022), found a string"),
        (job("<key>ThrottleInterval</key><integer>-1</integer>").into_bytes(), "job.plist:7: ThrottleInterval must not be negative, found -1"),
        (job("<key>ExitTimeOut</key><real>1.5</real>").into_bytes(), "job.plist:7: ExitTimeOut must be an integer (seconds), found a real number"),
        (job("<key>ExitTimeOut</key><integer>999999999999</integer>").into_bytes(), "job.plist:7: ExitTimeOut 999999999999 is longer than kelpie's longest duration (10 years)"),
        (job("<key>WorkingDirectory</key><string></string>").into_bytes(), "job.plist:7: WorkingDirectory is empty"),
        (job("<key>RunAtLoad</key><true/>\n<key>RunAtLoad</key><false/>").into_bytes(), "job.plist:8: key \"RunAtLoad\" is given twice in one dictionary (first at line 7)"),
        (job(&format!("<key>Deep</key>\n{}{}", "<array>".repeat(200), "</array>".repeat(200))).into_bytes(), "job.plist:8: nested more than 64 levels deep"),
        (b"<plist>\n<dict>\n<key>Label</key><string>caf\xe9</string>\n".to_vec(), "job.plist:3: not valid UTF-8 text (an XML property list is UTF-8; a binary one starts with \"bplist\")"),
    ];
    for (bytes, want) in cases {
        let err = import_texts(&[("job.plist", &bytes)])
            .err()
            .unwrap_or_else(|| panic!("accepted {}", String::from_utf8_lossy(&bytes)));
        assert_eq!(err.to_string(), want, "{}", String::from_utf8_lossy(&bytes));
        assert_eq!(err.code, super::super::EXIT_DATAERR);
    }
    let err = import_texts(&[("job.plist", b"bplist00 not really")])
        .err()
        .unwrap_or_else(|| panic!("accepted a broken binary plist"));
    assert_eq!(
        err.to_string(),
        "job.plist: not a valid binary property list: the file ends before the property list does"
    );
}

#[test]
fn any_cut_of_a_plist_is_an_error_or_a_job_never_a_panic() {
    let xml = plist(&format!(
        "{AGENT}<key>KeepAlive</key><dict><key>Crashed</key><true/></dict>\n<!-- a <key>comment</key> -->\n<key>EnvironmentVariables</key><dict><key>A&amp;B</key><string><![CDATA[x<y]]></string></dict>\n"
    ));
    let value = Value::from_reader_xml(xml.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let mut binary = Vec::new();
    value
        .to_writer_binary(&mut binary)
        .unwrap_or_else(|e| panic!("{e}"));
    let file = Path::new("job.plist");
    for bytes in [xml.as_bytes(), binary.as_slice()] {
        for end in 0..=bytes.len() {
            let cut = &bytes[..end];
            if let Ok((value, lines)) = parse_plist(file, cut) {
                let _ = Plist { file, lines }.job(&value);
            }
        }
        let whole = parse_plist(file, bytes).unwrap_or_else(|e| panic!("{e}"));
        assert!(Plist {
            file,
            lines: whole.1
        }
        .job(&whole.0)
        .is_ok());
    }
}

#[test]
fn a_binary_plist_reads_like_its_xml() {
    let xml = plist(&format!(
        "{AGENT}<key>KeepAlive</key><dict><key>SuccessfulExit</key><false/></dict>\n<key>EnvironmentVariables</key><dict><key>A</key><string>1</string></dict>\n<key>StartInterval</key><integer>60</integer>\n"
    ));
    let value = Value::from_reader_xml(xml.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let mut binary = Vec::new();
    value
        .to_writer_binary(&mut binary)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(binary.starts_with(b"bplist00"));
    let from_xml = import_texts(&[("job.plist", xml.as_bytes())]).unwrap_or_else(|e| panic!("{e}"));
    let from_binary = import_texts(&[("job.plist", &binary)]).unwrap_or_else(|e| panic!("{e}"));
    let (a, b) = (&from_xml.programs[0], &from_binary.programs[0]);
    assert_eq!(b.origin, Some(Origin::new("job.plist", 0)));
    assert_eq!(
        Program {
            origin: None,
            ..a.clone()
        },
        Program {
            origin: None,
            ..b.clone()
        }
    );
    assert_eq!(
        dropped(&from_binary),
        ["job.plist: StartInterval: kelpie has no interval timers; run the job from cron or a systemd timer"]
    );
    assert_eq!(from_xml.dropped[0].origin.line, 9);
}

#[test]
fn many_files_are_programs_in_argument_order_with_unique_labels() {
    let a = plist(
        "<key>Label</key><string>com.x app</string>\n<key>Program</key><string>/bin/a</string>\n",
    );
    let b = plist("<key>Label</key><string>com.x-app</string>\n<key>Program</key><string>/bin/b</string>\n<key>Sockets</key><dict/>\n");
    let c =
        plist("<key>Label</key><string>zeta</string>\n<key>Program</key><string>/bin/c</string>\n");
    let draft = import_texts(&[
        ("z.plist", c.as_bytes()),
        ("a.plist", a.as_bytes()),
        ("b.plist", b.as_bytes()),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = draft.programs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["zeta", "com.x-app", "com.x-app-2"]);
    assert_eq!(draft.dropped.len(), 1);
    assert_eq!(draft.dropped[0].program.as_deref(), Some("com.x-app-2"));
    assert_eq!(draft.dropped[0].origin, Origin::new("b.plist", 7));
    assert!(draft.programs[1].notes[0].contains("\"com.x app\" is not a kelpie name"));

    let err = import_texts(&[("a.plist", c.as_bytes()), ("b.plist", c.as_bytes())])
        .err()
        .unwrap_or_else(|| panic!("accepted a label twice"));
    assert_eq!(
        err.to_string(),
        "b.plist:5: Label \"zeta\" is also the Label of a.plist: launchd loads only one job per label"
    );
}

fn limits(soft: &str, hard: &str) -> Draft {
    let dict = |key: &str, body: &str| {
        if body.is_empty() {
            String::new()
        } else {
            format!("<key>{key}</key>\n<dict>\n{body}</dict>\n")
        }
    };
    import_one(&format!(
        "{AGENT}{}{}",
        dict("SoftResourceLimits", soft),
        dict("HardResourceLimits", hard)
    ))
}

#[test]
fn resource_limits_become_rlimits_without_lowering_a_hard_limit() {
    let int = |key: &str, n: u64| format!("<key>{key}</key><integer>{n}</integer>\n");
    // Equal soft and hard: exact, for every resource launchd names.
    let mut both = String::new();
    for (i, (key, _)) in RESOURCE_LIMITS.iter().enumerate() {
        both.push_str(&int(key, 100 + i as u64));
    }
    let draft = limits(&both, &both);
    let p = &draft.programs[0];
    let want: BTreeMap<RlimitResource, u64> = RESOURCE_LIMITS
        .iter()
        .enumerate()
        .map(|(i, (_, r))| (*r, 100 + i as u64))
        .collect();
    assert_eq!(p.rlimits, want);
    assert!(draft.dropped.is_empty(), "{:?}", dropped(&draft));
    assert!(
        p.notes.iter().any(|n| n.contains("rlimits.rss")),
        "{:?}",
        p.notes
    );

    // Soft below hard: the hard limit, and the soft one reported.
    let draft = limits(&int("NumberOfFiles", 4096), &int("NumberOfFiles", 8192));
    assert_eq!(
        draft.programs[0].rlimits,
        [(RlimitResource::Nofile, 8192)].into()
    );
    assert_eq!(
        dropped(&draft),
        ["job.plist:9: SoftResourceLimits.NumberOfFiles: kelpie sets one value as both the soft and the hard limit: rlimits.nofile = 8192 keeps the hard limit, so the soft limit is 8192 rather than 4096"]
    );

    // Soft only: carried over only when it cannot lower the hard limit.
    let draft = limits(&int("Core", 0), "");
    assert!(draft.programs[0].rlimits.is_empty());
    assert_eq!(
        dropped(&draft),
        ["job.plist:9: SoftResourceLimits.Core: kelpie sets one value as both the soft and the hard limit, so rlimits.core = 0 would also lower the hard limit, which launchd leaves as inherited; add it by hand if 0 suits as both"]
    );
    let draft = limits(&int("NumberOfFiles", 4096), "");
    assert!(draft.programs[0].rlimits.is_empty());
    assert_eq!(dropped(&draft).len(), 1, "{:?}", dropped(&draft));
    let draft = limits(&int("Stack", MACOS_RLIM_INFINITY), "");
    assert_eq!(
        draft.programs[0].rlimits,
        [(RlimitResource::Stack, UNLIMITED)].into()
    );
    assert!(draft.dropped.is_empty(), "{:?}", dropped(&draft));

    // Hard only: the hard limit, with a note on the soft one.
    let draft = limits("", &int("NumberOfProcesses", 512));
    let p = &draft.programs[0];
    assert_eq!(p.rlimits, [(RlimitResource::Nproc, 512)].into());
    assert!(draft.dropped.is_empty(), "{:?}", dropped(&draft));
    assert!(
        p.notes.iter().any(|n| n == "HardResourceLimits.NumberOfProcesses = 512 became rlimits.nproc = 512, which sets the soft limit to 512 too; launchd left the soft limit as inherited"),
        "{:?}",
        p.notes
    );

    // Soft above hard: launchd's setrlimit fails, so neither.
    let draft = limits(&int("CPU", 60), &int("CPU", 30));
    assert!(draft.programs[0].rlimits.is_empty());
    assert_eq!(
        dropped(&draft),
        ["job.plist:9: SoftResourceLimits.CPU: 60 is above HardResourceLimits.CPU (30): setrlimit refuses that, so launchd sets neither limit, and neither is carried over"]
    );

    // An unknown resource is reported; the rest still count.
    let draft = limits(
        &format!("{}{}", int("Threads", 5), int("FileSize", 1 << 20)),
        &int("FileSize", 1 << 20),
    );
    assert_eq!(
        draft.programs[0].rlimits,
        [(RlimitResource::Fsize, 1 << 20)].into()
    );
    assert_eq!(
        dropped(&draft),
        ["job.plist:9: SoftResourceLimits.Threads: not a resource limit launchd.plist(5) names"]
    );
}

#[test]
fn bad_resource_limits_are_one_line_errors() {
    let cases = [
        (
            "<key>SoftResourceLimits</key><integer>5</integer>\n",
            "job.plist:7: SoftResourceLimits must be a dictionary of integers, found an integer",
        ),
        (
            "<key>HardResourceLimits</key>\n<dict>\n<key>NumberOfFiles</key><string>many</string>\n</dict>\n",
            "job.plist:9: HardResourceLimits.NumberOfFiles must be an integer, found a string",
        ),
        (
            "<key>HardResourceLimits</key>\n<dict>\n<key>Core</key><integer>-1</integer>\n</dict>\n",
            "job.plist:9: HardResourceLimits.Core must not be negative, found -1",
        ),
    ];
    for (body, want) in cases {
        let text = plist(&format!("{AGENT}{body}"));
        let err = import_texts(&[("job.plist", text.as_bytes())])
            .err()
            .unwrap_or_else(|| panic!("accepted:\n{text}"));
        assert_eq!(err.to_string(), want, "{text}");
    }
}
