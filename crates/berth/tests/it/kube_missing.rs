//! Built without the `kubernetes` feature, the Kubernetes target's tests
//! cannot run: this test fails instead of letting them vanish. Run them with
//! `cargo nextest run -p berth --features kubernetes --test integration kube_`
//! (scripts/test.sh builds with the feature).

#[test]
fn kube_tests_need_the_kubernetes_feature() {
    panic!(
        "the Kubernetes target's tests (kube_cluster, kube_deploy, kube_fake_api) are compiled only with `--features kubernetes`: rerun with it"
    );
}
