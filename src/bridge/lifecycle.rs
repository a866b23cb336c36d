//! The bridge's periodic and final duties: the registry heartbeat (with the sweep of dead nodes) and
//! the clean-up at shutdown.

use super::*;

/// One registry heartbeat (draining once shutdown began), a fresh node list for the admin server, and
/// the channel members of nodes found dead swept away.
pub(super) async fn heartbeat(
    session: &mut Session,
    shared: &Shared,
    view: &ClusterView,
) -> redis::RedisResult<()> {
    let state = if shared.draining.load(Ordering::Acquire) {
        NodeState::Draining
    } else {
        NodeState::Alive
    };
    timed(session.registry.heartbeat(state)).await?;
    let nodes = timed(session.registry.list()).await?;
    let mut dead = false;
    for node in &nodes {
        if node.state == Liveness::Dead {
            dead = true;
            if session.swept.insert(node.id.clone()) {
                // Presence members first: their sweep tells who left the cluster with the node.
                let inboxes = session.queries.inboxes.clone();
                pusher::sweep(&mut session.pusher, &node.id, &inboxes).await?;
                let hooks = session.webhooks.clone();
                occupancy::sweep(&mut session.occupancy, &node.id, hooks.as_deref()).await?;
                let fields = timed(session.members.remove_node(&node.id)).await?;
                if fields > 0 {
                    info!(node = %node.id, fields, "removed the channel members of a dead node");
                }
            }
        }
    }
    if dead {
        for node in timed(session.registry.prune_dead(session.keep_dead)).await? {
            info!(node = %node, "removed a node dead for longer than the presence TTL from the registry");
        }
    }
    if let Ok(mut cached) = view.nodes.lock() {
        *cached = nodes;
    }
    set_up(view, true);
    Ok(())
}

/// Shutdown: write what is pending, remove every presence field and channel member this node wrote,
/// leave the registry.
pub(super) async fn finish(session: &mut Session, shared: &Shared, state: &mut BridgeState) {
    drain_events(&shared.link, state, None);
    // The members whose last socket was here leave the cluster now, not when this node is swept.
    let relay = session.relay.clone();
    let written = pusher::apply_at_shutdown(
        &mut session.pusher,
        &mut state.presence,
        &relay,
        &mut state.occupancy,
    );
    if let Err(e) = written.await {
        warn!(error = %e, "could not write the last presence changes");
    }
    // The goings of this node's last holders: no grace left to wait, but a return elsewhere still
    // cancels them.
    let hooks = session.webhooks.clone();
    let node = session.queries.node_id.clone();
    let occupancy = &mut state.occupancy;
    let confirmed = async {
        occupancy
            .apply(&mut session.occupancy, &node, hooks.as_deref())
            .await?;
        occupancy
            .confirm_due(&mut session.occupancy, hooks.as_deref(), true)
            .await
    };
    if let Err(e) = confirmed.await {
        warn!(error = %e, "could not send the last occupancy webhooks");
    }
    let users: Vec<Arc<str>> = state
        .applied
        .keys()
        .chain(state.pending.keys())
        .cloned()
        .collect();
    match session.presence.remove_node(&users, now_ms()).await {
        Ok(_) => info!(users = users.len(), "removed this node's presence"),
        Err(e) => warn!(error = %e, "could not remove presence; it expires with the TTL"),
    }
    if let Err(e) = session.members.remove_own().await {
        warn!(error = %e, "could not remove channel members; live nodes sweep them once this node is dead");
    }
    if let Err(e) = session.registry.remove().await {
        warn!(error = %e, "could not leave the registry; the entry expires with the TTL");
    }
}
