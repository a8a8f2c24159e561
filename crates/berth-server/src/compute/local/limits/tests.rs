use super::*;

fn req(
    cpu_limit: Option<f64>,
    memory_limit: Option<f64>,
    gpu: u32,
) -> ContainerResourceRequirements {
    ContainerResourceRequirements {
        cpu: 0.5,
        cpu_limit,
        memory_in_gb: 0.5,
        memory_in_gb_limit: memory_limit,
        gpu,
    }
}

#[test]
fn cpu_lists_parse() {
    assert_eq!(parse_cpu_list("0-2,5\n"), [0, 1, 2, 5]);
    assert_eq!(parse_cpu_list(""), Vec::<u32>::new());
    assert_eq!(gb_to_bytes(0.25), 256 << 20);
}

#[tokio::test]
async fn rlimit_mode_spreads_affinity_sets_a_backstop_and_hides_gpus() {
    let manager = Arc::new(ResourceManager::with_layout(
        ResourceEnforcement::Rlimit,
        None,
        &["0".into(), "1".into()],
        vec![0, 1, 2, 3],
    ));
    let a = manager
        .prepare("svc", 1, 0, &req(Some(1.5), Some(0.25), 0))
        .unwrap();
    let b = manager
        .prepare("svc", 1, 1, &req(Some(1.5), Some(0.25), 1))
        .unwrap();
    let var = |l: &ReplicaLimits, k: &str| {
        l.env()
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(var(&a, "BERTH_CPU_AFFINITY").as_deref(), Some("0,1"));
    assert_eq!(var(&b, "BERTH_CPU_AFFINITY").as_deref(), Some("2,3"));
    assert_eq!(var(&a, "CUDA_VISIBLE_DEVICES").as_deref(), Some(""));
    assert_eq!(var(&a, "NVIDIA_VISIBLE_DEVICES").as_deref(), Some("none"));
    assert_eq!(var(&b, "CUDA_VISIBLE_DEVICES").as_deref(), Some("0"));
    assert!(var(&a, "BERTH_RLIMIT_AS_BYTES").is_some());
    assert!(
        var(&b, "BERTH_RLIMIT_AS_BYTES").is_none(),
        "no address-space cap with GPUs"
    );
    assert_eq!(a.watchdog_limit, Some(256 << 20));

    // One GPU left: a second 1-GPU replica fits, a 2-GPU one does not.
    assert!(manager.check_gpus("other", 1, 1, false).is_ok());
    let err = manager.check_gpus("other", 2, 1, false).unwrap_err();
    assert_eq!(err.code(), berth_api::OperationErrorCode::Unschedulable);
    // Rolling: the service's own GPU is not counted; live: it is.
    assert!(manager.check_gpus("svc", 2, 1, false).is_err());
    assert!(manager.check_gpus("svc", 2, 1, true).is_ok());
    assert!(manager.prepare("x", 1, 0, &req(None, None, 2)).is_err());

    a.set_kill_reason("killed for test".into());
    assert_eq!(
        a.settle(None, None).await.as_deref(),
        Some("killed for test")
    );
    assert_eq!(a.exit_reason().await.as_deref(), Some("killed for test"));
    assert_eq!(manager.last_kill("svc").unwrap().reason, "killed for test");
    assert_eq!(b.settle(None, None).await, None);
    assert_eq!(
        manager.gpu_assignments("svc"),
        Vec::<String>::new(),
        "GPUs freed"
    );
}

#[tokio::test]
async fn cgroup_mode_makes_a_group_and_removes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (mem, cpu) = (tmp.path().join("memory"), tmp.path().join("cpu"));
    for dir in [&mem, &cpu] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("cgroup.procs"), "").unwrap();
    }
    let layout = cgroup::prepare_v1(&mem, &cpu, "s9").unwrap();
    let manager = Arc::new(ResourceManager::with_layout(
        ResourceEnforcement::CgroupV1,
        Some(layout),
        &[],
        vec![0],
    ));
    let limits = manager
        .prepare("svc", 3, 0, &req(Some(1.0), Some(1.0), 0))
        .unwrap();
    let procs = limits
        .env()
        .iter()
        .find(|(k, _)| k == "BERTH_CGROUP_PROCS")
        .map(|(_, v)| v.clone())
        .unwrap();
    let dir = mem.join("berth/s9/svc/r3-0");
    assert!(
        procs.starts_with(&dir.join("cgroup.procs").display().to_string()),
        "{procs}"
    );
    assert!(
        !limits
            .env()
            .iter()
            .any(|(k, _)| k == "CUDA_VISIBLE_DEVICES"),
        "no GPUs configured"
    );
    std::fs::write(dir.join("memory.oom_control"), "oom_kill 1\n").unwrap();
    let reason = limits.oom_reason(None).unwrap();
    assert!(
        reason.contains("1024 MiB") && reason.contains("cgroup-v1"),
        "{reason}"
    );
    // The fake group holds regular files, so rmdir fails: remove them as the kernel would.
    for entry in std::fs::read_dir(&dir).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let cpu_dir = cpu.join("berth/s9/svc/r3-0");
    for entry in std::fs::read_dir(&cpu_dir).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    limits.settle(None, None).await;
    assert!(!dir.exists() && !cpu_dir.exists());
}

#[test]
fn show_names_the_mapping_and_says_when_nothing_caps() {
    let s = describe(
        ResourceEnforcement::CgroupV1,
        &req(None, Some(0.25), 0),
        false,
    );
    assert!(s.cpu.contains("cpu.shares 512"), "{}", s.cpu);
    assert!(s.cpu_limit.contains("not capped"), "{}", s.cpu_limit);
    assert!(
        s.memory_limit.contains("memory.limit_in_bytes 268435456"),
        "{}",
        s.memory_limit
    );
    let r = describe(ResourceEnforcement::Rlimit, &req(Some(2.0), None, 0), true);
    assert!(
        r.cpu_limit.contains("affinity to 2 core(s)"),
        "{}",
        r.cpu_limit
    );
    assert!(r.memory_limit.contains("not capped"));
    assert!(r.gpu.contains("CUDA_VISIBLE_DEVICES is empty"));
}
