//! The tree policies' configs in gRPC's JSON form, read and written: `priority_experimental`
//! (gRFC A56), `weighted_target_experimental` and `random_subsetting` (gRFC A68). Each holds
//! `loadBalancingConfig` lists of its own, read as the top-level one is.

use serde_json::{json, Map, Value};

use crate::policy::{PriorityChild, PriorityConfig, RandomSubsettingConfig, WeightedTargetConfig};

use super::config::LoadBalancingConfig;
use super::error::ServiceConfigError;
use super::json::Node;
use super::registry::ServiceConfigParser;

type Result<T> = std::result::Result<T, ServiceConfigError>;

impl LoadBalancingConfig {
    /// The name gRPC knows the policy by in a `loadBalancingConfig` entry.
    pub(crate) fn json_name(&self) -> &str {
        match self {
            LoadBalancingConfig::Priority { .. } => "priority_experimental",
            LoadBalancingConfig::WeightedTarget { .. } => "weighted_target_experimental",
            other => other.name(),
        }
    }
}

/// The keys of the object at `node`, in order (JSON objects are read sorted by key).
fn keys<'a>(node: &Node<'a>) -> Result<Vec<&'a str>> {
    node.object()?;
    Ok(node
        .value()
        .as_object()
        .map(|map| map.keys().map(String::as_str).collect())
        .unwrap_or_default())
}

/// `priority_experimental`: `children`, an object of `{"config": [...],
/// "ignoreReresolutionRequests": bool}` by name, and `priorities`, the list of their names
/// highest first. Every priority must name a child, once; every child must be in the list.
pub(crate) fn priority(
    parser: &ServiceConfigParser,
    node: &Node<'_>,
) -> Result<LoadBalancingConfig> {
    let fields = node.object()?;
    let children_node = fields
        .get("children")
        .ok_or_else(|| node.invalid("children is required"))?;
    let children = children_node.object()?;
    let priorities_node = fields
        .get("priorities")
        .ok_or_else(|| node.invalid("priorities is required"))?;
    let mut order: Vec<&str> = Vec::new();
    for item in priorities_node.items()? {
        let name = item.string()?;
        if children.get(name).is_none() {
            return Err(item.invalid(format!("names {name:?}, which is not in children")));
        }
        if order.contains(&name) {
            return Err(item.invalid(format!("names {name:?} a second time")));
        }
        order.push(name);
    }
    for name in keys(&children_node)? {
        if !order.contains(&name) {
            let child = children.get(name).unwrap_or(children_node);
            return Err(child.invalid(format!("child {name:?} is not in priorities")));
        }
    }
    let mut config = PriorityConfig::new();
    let mut chosen = Vec::new();
    for name in order {
        let Some(child) = children.get(name) else {
            continue;
        };
        let child_fields = child.object()?;
        let list = child_fields
            .get("config")
            .ok_or_else(|| child.invalid("config is required"))?;
        let policy = parser.choose(&list)?;
        let ignore = match child_fields.opt("ignoreReresolutionRequests", Node::bool)? {
            Some(ignore) => ignore,
            None => child_fields
                .opt("ignore_reresolution_requests", Node::bool)?
                .unwrap_or(false),
        };
        config = config
            .push(PriorityChild::new(name, policy.policy()).ignore_reresolution_requests(ignore));
        chosen.push(policy);
    }
    Ok(LoadBalancingConfig::Priority {
        config: Box::new(config),
        children: chosen,
    })
}

/// `weighted_target_experimental`: `targets`, an object of `{"weight": n, "childPolicy":
/// [...]}` by name; weights from 1.
pub(crate) fn weighted_target(
    parser: &ServiceConfigParser,
    node: &Node<'_>,
) -> Result<LoadBalancingConfig> {
    let fields = node.object()?;
    let targets_node = fields
        .get("targets")
        .ok_or_else(|| node.invalid("targets is required"))?;
    let targets = targets_node.object()?;
    let mut config = WeightedTargetConfig::new();
    let mut chosen = Vec::new();
    for name in keys(&targets_node)? {
        let Some(target) = targets.get(name) else {
            continue;
        };
        let target_fields = target.object()?;
        let weight_node = target_fields
            .get("weight")
            .ok_or_else(|| target.invalid("weight is required"))?;
        let weight = weight_node.u32()?;
        if weight == 0 {
            return Err(weight_node.invalid("must be at least 1, got 0"));
        }
        let list = target_fields
            .get("childPolicy")
            .ok_or_else(|| target.invalid("childPolicy is required"))?;
        let policy = parser.choose(&list)?;
        config = config.target(name, weight, policy.policy());
        chosen.push(policy);
    }
    Ok(LoadBalancingConfig::WeightedTarget {
        config: Box::new(config),
        targets: chosen,
    })
}

/// `random_subsetting` (gRFC A68): `subsetSize`, from 1, and `childPolicy`, both required.
pub(crate) fn random_subsetting(
    parser: &ServiceConfigParser,
    node: &Node<'_>,
) -> Result<LoadBalancingConfig> {
    let fields = node.object()?;
    let size_node = fields
        .get("subsetSize")
        .ok_or_else(|| node.invalid("subsetSize is required"))?;
    let size = size_node.u32()?;
    if size == 0 {
        return Err(size_node.invalid("must be at least 1, got 0"));
    }
    let list = fields
        .get("childPolicy")
        .ok_or_else(|| node.invalid("childPolicy is required"))?;
    let child = parser.choose(&list)?;
    Ok(LoadBalancingConfig::RandomSubsetting {
        config: Box::new(RandomSubsettingConfig::new(size, child.policy())),
        child: Box::new(child),
    })
}

pub(crate) fn print_priority(config: &PriorityConfig, children: &[LoadBalancingConfig]) -> Value {
    let mut by_name = Map::new();
    for (child, policy) in config.children.iter().zip(children) {
        by_name.insert(
            child.name.to_string(),
            json!({
                "config": [policy.to_json()],
                "ignoreReresolutionRequests": child.ignore_reresolution_requests,
            }),
        );
    }
    let names: Vec<&str> = config.children.iter().map(|c| &*c.name).collect();
    json!({ "children": by_name, "priorities": names })
}

pub(crate) fn print_weighted_target(
    config: &WeightedTargetConfig,
    targets: &[LoadBalancingConfig],
) -> Value {
    let mut by_name = Map::new();
    for (target, policy) in config.targets.iter().zip(targets) {
        by_name.insert(
            target.name.to_string(),
            json!({ "weight": target.weight, "childPolicy": [policy.to_json()] }),
        );
    }
    json!({ "targets": by_name })
}

pub(crate) fn print_random_subsetting(
    config: &RandomSubsettingConfig,
    child: &LoadBalancingConfig,
) -> Value {
    json!({ "subsetSize": config.subset_size, "childPolicy": [child.to_json()] })
}
