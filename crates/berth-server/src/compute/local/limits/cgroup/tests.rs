use super::*;

const MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu
31 25 0:27 / /sys/fs/cgroup/memory rw,relatime shared:10 - cgroup cgroup rw,memory
32 25 0:28 / /sys/fs/cgroup/unified rw,relatime shared:11 - cgroup2 cgroup2 rw
33 25 0:29 / /proc rw - proc proc rw
";
const MEMBERSHIP: &str = "4:memory:/process_api/abc\n1:cpu:/\n0::/user.slice\n";

#[test]
fn finds_the_own_groups_from_mountinfo_and_membership() {
    let roots = roots_from(MOUNTINFO, MEMBERSHIP);
    assert_eq!(
        roots.v1_memory.as_deref(),
        Some(Path::new("/sys/fs/cgroup/memory/process_api/abc"))
    );
    assert_eq!(
        roots.v1_cpu.as_deref(),
        Some(Path::new("/sys/fs/cgroup/cpu"))
    );
    assert_eq!(
        roots.v2.as_deref(),
        Some(Path::new("/sys/fs/cgroup/unified/user.slice"))
    );
    assert_eq!(roots_from("", ""), CgroupRoots::default());
}

/// A directory laid out like a v1 group (the kernel would create the files).
fn fake_v1_group(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("cgroup.procs"), "").unwrap();
}

fn settings() -> GroupSettings {
    GroupSettings {
        cpu: 0.5,
        cpu_limit: Some(1.5),
        memory: 512 << 20,
        memory_limit: Some(256 << 20),
        pids_max: Some(64),
    }
}

#[test]
fn v1_groups_get_shares_quota_and_memory_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let (mem, cpu) = (tmp.path().join("memory/own"), tmp.path().join("cpu"));
    fake_v1_group(&mem);
    fake_v1_group(&cpu);
    let layout = prepare_v1(&mem, &cpu, "s1").unwrap();
    let group = Group::create(&layout, "my.svc", "r1-0", &settings()).unwrap();
    let m = mem.join("berth/s1/my_svc/r1-0");
    let c = cpu.join("berth/s1/my_svc/r1-0");
    assert_eq!(group.dirs, [m.clone(), c.clone()]);
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
    assert_eq!(read(c.join("cpu.shares")), "512");
    assert_eq!(read(c.join("cpu.cfs_quota_us")), "150000");
    assert_eq!(read(c.join("cpu.cfs_period_us")), "100000");
    assert_eq!(
        read(m.join("memory.limit_in_bytes")),
        (256u64 << 20).to_string()
    );
    assert_eq!(
        read(m.join("memory.soft_limit_in_bytes")),
        (512u64 << 20).to_string()
    );
    assert!(
        !m.join("memory.memsw.limit_in_bytes").exists(),
        "no swap accounting here"
    );
    assert_eq!(
        group.procs_files(),
        [m.join("cgroup.procs"), c.join("cgroup.procs")]
    );

    assert!(!group.oom_killed());
    std::fs::write(
        m.join("memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
    )
    .unwrap();
    assert!(group.oom_killed());

    // A second group with the same name while the first is still there gets a suffix.
    let again = Group::create(&layout, "my.svc", "r1-0", &settings()).unwrap();
    assert_ne!(again.dirs[0], m);
}

#[test]
fn v2_groups_enable_controllers_and_write_weight_max_and_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let own = tmp.path().join("own");
    std::fs::create_dir_all(&own).unwrap();
    std::fs::write(
        own.join("cgroup.controllers"),
        "cpuset cpu io memory pids\n",
    )
    .unwrap();
    let layout = prepare_v2(&own, "s7").unwrap();
    assert_eq!(
        std::fs::read_to_string(own.join("cgroup.subtree_control")).unwrap(),
        "+memory +cpu +pids",
        "pids too where the group offers it"
    );
    assert_eq!(
        std::fs::read_to_string(own.join("berth/s7/cgroup.subtree_control")).unwrap(),
        "+memory +cpu"
    );
    std::fs::create_dir_all(own.join("berth/s7/svc")).unwrap();
    let group = Group::create(&layout, "svc", "r2-1", &settings()).unwrap();
    let dir = own.join("berth/s7/svc/r2-1");
    assert!(
        !group.limits_pids(),
        "no pids controller in this fake group"
    );
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    assert_eq!(read("cpu.weight"), cpu_weight(0.5).to_string());
    assert_eq!(read("cpu.max"), "150000 100000");
    assert_eq!(read("memory.max"), (256u64 << 20).to_string());
    assert_eq!(read("memory.low"), (512u64 << 20).to_string());
    std::fs::write(
        dir.join("memory.events"),
        "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
    )
    .unwrap();
    assert!(group.oom_killed());
}

#[test]
fn v2_without_memory_and_cpu_controllers_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("cgroup.controllers"), "\n").unwrap();
    let err = prepare_v2(tmp.path(), "s1").unwrap_err();
    assert!(err.to_string().contains("not both memory and cpu"), "{err}");
}

#[test]
fn no_limit_writes_no_cap_and_conversions_follow_kubernetes() {
    let s = GroupSettings {
        cpu: 0.1,
        cpu_limit: None,
        memory: 1 << 30,
        memory_limit: None,
        pids_max: None,
    };
    assert!(
        v1_writes(&s)
            .iter()
            .all(|(_, f, _)| !f.contains("limit_in_bytes") || f.starts_with("memory.soft"))
    );
    assert!(
        v2_writes(&s)
            .iter()
            .all(|(f, _)| *f != "memory.max" && *f != "cpu.max")
    );
    assert_eq!(cpu_shares(0.001), 2);
    assert_eq!(cpu_shares(1.0), 1024);
    assert_eq!(cpu_weight(1.0), 39);
    assert_eq!(cfs_quota(0.001), 1000);
    assert_eq!(sanitise("a.B/c"), "a_b_c");
    assert_eq!(oom_kill_count("oom_kill 4\n"), 4);
}
