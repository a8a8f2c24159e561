//! The GPU allocator: hands out device ids from the server's `--gpus` list to
//! replicas and takes them back when a replica's process is gone.

use std::collections::BTreeMap;

/// Who holds a device: service, revision, replica index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuOwner {
    /// Service name.
    pub service: String,
    /// Revision.
    pub revision: u32,
    /// Replica index.
    pub index: u32,
}

/// The configured devices and who holds each.
#[derive(Debug, Default)]
pub struct GpuPool {
    /// Device id → owner (None when free), in configuration order.
    devices: Vec<(String, Option<GpuOwner>)>,
}

impl GpuPool {
    /// A pool of `ids`, all free (duplicates are dropped).
    pub fn new(ids: &[String]) -> Self {
        let mut devices: Vec<(String, Option<GpuOwner>)> = Vec::new();
        for id in ids {
            if !devices.iter().any(|(d, _)| d == id) {
                devices.push((id.clone(), None));
            }
        }
        Self { devices }
    }

    /// Every configured id.
    pub fn configured(&self) -> Vec<String> {
        self.devices.iter().map(|(id, _)| id.clone()).collect()
    }

    /// Free ids.
    pub fn free(&self) -> Vec<String> {
        self.devices
            .iter()
            .filter(|(_, owner)| owner.is_none())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// How many devices `service` holds (all revisions).
    pub fn held_by(&self, service: &str) -> usize {
        self.devices
            .iter()
            .filter(|(_, o)| o.as_ref().is_some_and(|o| o.service == service))
            .count()
    }

    /// `r<revision>/<replica>=<ids>` for every replica of `service` holding devices.
    pub fn assignments(&self, service: &str) -> Vec<String> {
        let mut by_replica: BTreeMap<(u32, u32), Vec<&str>> = BTreeMap::new();
        for (id, owner) in &self.devices {
            if let Some(o) = owner.as_ref().filter(|o| o.service == service) {
                by_replica
                    .entry((o.revision, o.index))
                    .or_default()
                    .push(id);
            }
        }
        by_replica
            .into_iter()
            .map(|((rev, index), ids)| format!("r{rev}/{index}={}", ids.join(",")))
            .collect()
    }

    /// Takes `count` free devices for `owner`; None (and nothing taken) when
    /// fewer are free.
    pub fn allocate(&mut self, count: usize, owner: &GpuOwner) -> Option<Vec<String>> {
        if self.free().len() < count {
            return None;
        }
        let mut taken = Vec::with_capacity(count);
        for (id, slot) in &mut self.devices {
            if taken.len() == count {
                break;
            }
            if slot.is_none() {
                *slot = Some(owner.clone());
                taken.push(id.clone());
            }
        }
        Some(taken)
    }

    /// Gives back `ids` held by `owner`.
    pub fn release(&mut self, ids: &[String], owner: &GpuOwner) {
        for (id, slot) in &mut self.devices {
            if ids.contains(id) && slot.as_ref() == Some(owner) {
                *slot = None;
            }
        }
    }
}

/// Why GPUs cannot be given: the message names the request, what is free, what
/// is configured, and the fix.
pub fn unschedulable_message(
    service: &str,
    per_replica: u32,
    replicas: u32,
    free: &[String],
    configured: &[String],
    own_counted: Option<usize>,
) -> String {
    let needed = u64::from(per_replica) * u64::from(replicas);
    let configured_text = if configured.is_empty() {
        "this server has no GPUs configured (`berth server --gpus 0,1,...`)".to_owned()
    } else {
        format!(
            "this server has {} GPU(s) configured ({}) and {} free ({})",
            configured.len(),
            configured.join(","),
            free.len(),
            if free.is_empty() {
                "none".to_owned()
            } else {
                free.join(",")
            }
        )
    };
    let own = match own_counted {
        Some(0) | None => String::new(),
        Some(n) => format!(
            "; the service's own {n} GPU(s) stay held until its new replicas are ready (a rolling update starts them first), so they are not counted as free"
        ),
    };
    format!(
        "service `{service}` is unschedulable: it asks for {per_replica} GPU(s) per replica × {replicas} replica(s) = {needed}, but {configured_text}{own}; ask for fewer GPUs or replicas (`gpuCores`), or free GPUs by scaling down or deleting another service"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(service: &str, index: u32) -> GpuOwner {
        GpuOwner {
            service: service.into(),
            revision: 1,
            index,
        }
    }

    #[test]
    fn allocates_free_devices_and_takes_them_back() {
        let mut pool = GpuPool::new(&["0".into(), "1".into(), "1".into()]);
        assert_eq!(pool.configured(), ["0", "1"]);
        let a = pool.allocate(1, &owner("a", 0)).unwrap();
        assert_eq!(a, ["0"]);
        assert_eq!(pool.allocate(2, &owner("b", 0)), None, "only one is free");
        assert_eq!(pool.free(), ["1"], "a refused allocation takes nothing");
        let b = pool.allocate(1, &owner("b", 0)).unwrap();
        assert_eq!(b, ["1"]);
        assert_eq!(pool.held_by("a"), 1);
        assert_eq!(pool.assignments("b"), ["r1/0=1"]);
        pool.release(&a, &owner("b", 0));
        assert!(pool.free().is_empty(), "only the owner releases");
        pool.release(&a, &owner("a", 0));
        assert_eq!(pool.free(), ["0"]);
        assert_eq!(
            pool.allocate(0, &owner("c", 0)).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_message_names_request_free_configured_and_fix() {
        let text = unschedulable_message(
            "big",
            3,
            1,
            &["1".into()],
            &["0".into(), "1".into()],
            Some(1),
        );
        assert!(
            text.contains("3 GPU(s) per replica × 1 replica(s) = 3"),
            "{text}"
        );
        assert!(
            text.contains("2 GPU(s) configured (0,1) and 1 free (1)"),
            "{text}"
        );
        assert!(text.contains("rolling update"), "{text}");
        assert!(text.contains("ask for fewer GPUs"), "{text}");
        let none = unschedulable_message("x", 1, 1, &[], &[], None);
        assert!(none.contains("no GPUs configured"), "{none}");
    }
}
