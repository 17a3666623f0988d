//! Deploy history of [`Deployer`]: the records, approvers, the Discord message of a deploy
//! and the rollback target read back from them.

use super::*;

impl Deployer {
    /// The last `n` deploys of `layer`, newest first.
    pub async fn history(&self, layer: &str, n: u32) -> Result<Vec<DeployRecord>, DeployError> {
        self.layer(layer)?;
        self.store
            .list_deploys(Some(layer), n)
            .await
            .map_err(|e| self.store_error(e))
    }

    /// A deploy of the layer's [`Deployer::rollback_target`] (the `layer_rollback` approval's
    /// parameters are its [`DeployRequest::to_params`]).
    pub async fn rollback_request(
        &self,
        layer: &str,
        requester: &str,
        reason: &str,
    ) -> Result<DeployRequest, DeployError> {
        let tag = self
            .rollback_target(layer)
            .await?
            .ok_or_else(|| DeployError::NoRollbackTarget(layer.to_string()))?;
        let req = DeployRequest {
            layer: layer.to_string(),
            image_tag: Some(tag),
            requester: requester.to_string(),
            reason: reason.to_string(),
        };
        self.check_request(&req)?;
        Ok(req)
    }

    /// Records who approved a deploy (the approval engine knows; the executor does not).
    pub async fn set_approver(&self, deploy_id: &str, approver: &str) -> Result<(), DeployError> {
        self.store
            .set_deploy_approver(deploy_id, approver)
            .await
            .map_err(|e| self.store_error(e))
    }

    /// Records where the deploy's own Discord message is, so that a restart in the middle of
    /// the deploy can have that message say so ([`Deployer::message_of`]).
    pub async fn set_message(
        &self,
        deploy_id: &str,
        channel_id: u64,
        message_id: u64,
    ) -> Result<(), DeployError> {
        self.store
            .set_deploy_message(deploy_id, channel_id, message_id)
            .await
            .map_err(|e| self.store_error(e))
    }

    /// Where the deploy's own Discord message is (channel id, message id), if recorded.
    pub async fn message_of(&self, deploy_id: &str) -> Result<Option<(u64, u64)>, DeployError> {
        self.store
            .get_deploy_message(deploy_id)
            .await
            .map_err(|e| self.store_error(e))
    }

    /// The tag to roll `layer` back to: the newest successful deploy's tag that differs from
    /// the tag of the newest deploy that ran (succeeded, failed, interrupted, or cancelled
    /// after it started applying); without one, the tag configured before that deploy. `None`
    /// without history (or for layers without tags).
    pub async fn rollback_target(&self, layer: &str) -> Result<Option<String>, DeployError> {
        self.layer(layer)?;
        let history = self
            .store
            .list_deploys(Some(layer), 500)
            .await
            .map_err(|e| self.store_error(e))?;
        Ok(rollback_from(&history))
    }

    pub(super) async fn rollback_target_excluding(
        &self,
        layer: &str,
        _deploy_id: &str,
    ) -> Option<String> {
        // The failing deploy is still `running` in the store; it ran, so it is the current one.
        match self.store.list_deploys(Some(layer), 500).await {
            Ok(history) => rollback_from(&history),
            Err(e) => {
                tracing::warn!(error = %e, "reading the deploy history failed");
                None
            }
        }
    }
}
