//! Chain-aware operation: a poll loop per BlockSight asks bitcoind, electrs, PostgreSQL and
//! Redis for their state ([`poller`]), and this module turns what they said into conditions,
//! status fields and the API gate, purely.
//!
//! The poller publishes an [`Observation`] only when it changed meaningfully (a new block
//! after sync, IBD or a condition flipping, a service staying unreachable, at most every five
//! minutes of IBD progress), then asks the controller to reconcile: status writes follow the
//! chain, not the poll interval.

pub mod poller;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::ConditionType;
use crate::crd::{ChainStatus, DatabaseStatus, ElectrsStatus};
use crate::probe::{BitcoindReport, ElectrsReport, PostgresReport, RedisReport, electrs_lag};

/// Consecutive failed polls after which a service counts as unreachable (a single timeout
/// during a busy moment is not an outage).
pub const UNREACHABLE_AFTER: u32 = 3;
/// electrs this many blocks behind bitcoind still counts as synced (a block arrives while
/// it indexes the previous one).
pub const INDEX_LAG_TOLERANCE: u64 = 2;

/// What the probes last said about one service.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceState<T> {
    /// The last successful report, kept through failures (status shows the last known state).
    pub last: Option<T>,
    /// The last error, when the last poll failed.
    pub error: Option<String>,
    /// Consecutive failed polls.
    pub failures: u32,
    /// The service has answered at least once.
    pub ever_up: bool,
}

impl<T> Default for ServiceState<T> {
    fn default() -> Self {
        Self {
            last: None,
            error: None,
            failures: 0,
            ever_up: false,
        }
    }
}

impl<T> ServiceState<T> {
    /// Fold in one poll's result.
    pub fn record(&mut self, result: Result<T, String>) {
        match result {
            Ok(report) => {
                self.last = Some(report);
                self.error = None;
                self.failures = 0;
                self.ever_up = true;
            }
            Err(error) => {
                self.error = Some(error);
                self.failures += 1;
            }
        }
    }

    pub fn unreachable(&self) -> bool {
        self.failures >= UNREACHABLE_AFTER
    }

    /// Up as far as conditions are concerned: answered, and not failing for several polls.
    pub fn up(&self) -> bool {
        self.ever_up && !self.unreachable() && self.last.is_some()
    }
}

/// Everything the poller knows about one BlockSight.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observation {
    pub bitcoind: ServiceState<BitcoindReport>,
    /// None when electrs is disabled.
    pub electrs: Option<ServiceState<ElectrsReport>>,
    pub postgres: ServiceState<PostgresReport>,
    pub redis: ServiceState<RedisReport>,
    /// The application and read-only roles exist (in-cluster PostgreSQL only; always true
    /// for an external database, which the user provisions).
    pub database_bootstrapped: bool,
}

impl Observation {
    /// Before the first poll: nothing known yet.
    pub fn initial(bs: &crate::validate::ValidBlockSight) -> Self {
        Self {
            electrs: bs.electrs.as_ref().map(|_| ServiceState::default()),
            database_bootstrapped: matches!(
                bs.postgres,
                crate::validate::Postgres::External { .. }
            ),
            ..Default::default()
        }
    }

    /// bitcoind has left initial block download and validated every header it knows.
    pub fn chain_synced(&self) -> bool {
        self.bitcoind.last.as_ref().is_some_and(|b| {
            self.bitcoind.up()
                && !b.initial_block_download
                && b.headers.saturating_sub(b.blocks) <= 1
        })
    }

    /// Blocks electrs' index is behind bitcoind, when both answered.
    pub fn index_lag(&self) -> Option<u64> {
        let blocks = self.bitcoind.last.as_ref()?.blocks;
        let indexed = self.electrs.as_ref()?.last.as_ref()?.indexed_height;
        Some(electrs_lag(blocks, indexed))
    }

    pub fn index_synced(&self) -> bool {
        match &self.electrs {
            None => true,
            Some(e) => {
                e.up()
                    && self.chain_synced()
                    && self
                        .index_lag()
                        .is_some_and(|lag| lag <= INDEX_LAG_TOLERANCE)
            }
        }
    }

    pub fn database_ready(&self) -> bool {
        self.postgres.up() && self.database_bootstrapped
    }

    pub fn cache_ready(&self) -> bool {
        self.redis.up()
    }

    /// A service that answered before has stopped answering.
    pub fn lost_services(&self) -> Vec<&'static str> {
        let mut lost = Vec::new();
        let mut check = |name, ever_up, unreachable| {
            if ever_up && unreachable {
                lost.push(name);
            }
        };
        check(
            "bitcoind",
            self.bitcoind.ever_up,
            self.bitcoind.unreachable(),
        );
        if let Some(e) = &self.electrs {
            check("electrs", e.ever_up, e.unreachable());
        }
        check(
            "postgres",
            self.postgres.ever_up,
            self.postgres.unreachable(),
        );
        check("redis", self.redis.ever_up, self.redis.unreachable());
        lost
    }

    /// The four chain conditions (Unknown while a probe cannot answer, with its error).
    pub fn conditions(&self, generation: Option<i64>, now: &Time) -> Vec<Condition> {
        let cond = |kind: &str, status: &str, reason: &str, message: String| Condition {
            type_: kind.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message,
            observed_generation: generation,
            last_transition_time: now.clone(),
        };
        fn unknown<T>(state: &ServiceState<T>, service: &str) -> Option<(&'static str, String)> {
            if state.unreachable() {
                return Some((
                    "Unreachable",
                    format!(
                        "{service} has not answered {} polls: {}",
                        state.failures,
                        state.error.clone().unwrap_or_default()
                    ),
                ));
            }
            if state.last.is_none() {
                let detail = state
                    .error
                    .clone()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                return Some((
                    "NotProbedYet",
                    format!("waiting for {service} to answer{detail}"),
                ));
            }
            None
        }
        let mut out = Vec::new();
        out.push(
            match (
                unknown(&self.bitcoind, "bitcoind"),
                self.bitcoind.last.as_ref(),
            ) {
                (Some((reason, message)), _) => cond(
                    ConditionType::ChainSynced.as_str(),
                    "Unknown",
                    reason,
                    message,
                ),
                (None, Some(b)) if self.chain_synced() => cond(
                    ConditionType::ChainSynced.as_str(),
                    "True",
                    "Synced",
                    format!("at block {}", b.blocks),
                ),
                (None, Some(b)) if b.initial_block_download => cond(
                    ConditionType::ChainSynced.as_str(),
                    "False",
                    "InitialBlockDownload",
                    format!(
                        "block {} of {} headers ({:.2}% verified)",
                        b.blocks,
                        b.headers,
                        b.verification_progress * 100.0
                    ),
                ),
                (None, Some(b)) => cond(
                    ConditionType::ChainSynced.as_str(),
                    "False",
                    "CatchingUp",
                    format!("block {} of {} headers", b.blocks, b.headers),
                ),
                (None, None) => unreachable!("unknown() covers a missing report"),
            },
        );
        out.push(match &self.electrs {
            None => cond(
                ConditionType::IndexSynced.as_str(),
                "True",
                "ElectrsDisabled",
                "electrs is disabled".into(),
            ),
            Some(e) => match (unknown(e, "electrs"), self.index_lag()) {
                (Some((reason, message)), _) => cond(
                    ConditionType::IndexSynced.as_str(),
                    "Unknown",
                    reason,
                    message,
                ),
                (None, _) if self.index_synced() => cond(
                    ConditionType::IndexSynced.as_str(),
                    "True",
                    "Synced",
                    format!("{} blocks behind bitcoind", self.index_lag().unwrap_or(0)),
                ),
                (None, Some(lag)) => cond(
                    ConditionType::IndexSynced.as_str(),
                    "False",
                    "Indexing",
                    format!("{lag} blocks behind bitcoind"),
                ),
                (None, None) => cond(
                    ConditionType::IndexSynced.as_str(),
                    "Unknown",
                    "WaitingForBitcoind",
                    "the lag needs bitcoind's height".into(),
                ),
            },
        });
        out.push(match unknown(&self.postgres, "PostgreSQL") {
            Some((reason, message)) => cond(
                ConditionType::DatabaseReady.as_str(),
                "Unknown",
                reason,
                message,
            ),
            None if !self.database_bootstrapped => cond(
                ConditionType::DatabaseReady.as_str(),
                "False",
                "Bootstrapping",
                "creating the application and read-only roles".into(),
            ),
            None => cond(
                ConditionType::DatabaseReady.as_str(),
                "True",
                "Ready",
                String::new(),
            ),
        });
        out.push(match unknown(&self.redis, "Redis") {
            Some((reason, message)) => cond(
                ConditionType::CacheReady.as_str(),
                "Unknown",
                reason,
                message,
            ),
            None => cond(
                ConditionType::CacheReady.as_str(),
                "True",
                "Ready",
                String::new(),
            ),
        });
        out
    }

    /// status.chain, status.electrs and status.database from the last reports.
    pub fn status_fields(
        &self,
    ) -> (
        Option<ChainStatus>,
        Option<ElectrsStatus>,
        Option<DatabaseStatus>,
    ) {
        let chain = self.bitcoind.last.as_ref().map(|b| ChainStatus {
            blocks: b.blocks,
            headers: b.headers,
            verification_progress: b.verification_progress,
            initial_block_download: b.initial_block_download,
            peers: b.peers,
            size_on_disk_bytes: b.size_on_disk_bytes,
            version: Some(b.version.clone()),
            txindex_synced: b.txindex_synced,
        });
        let electrs = self
            .electrs
            .as_ref()
            .and_then(|e| e.last.as_ref())
            .map(|e| ElectrsStatus {
                indexed_height: e.indexed_height,
                lag_blocks: self.index_lag(),
            });
        let database = self.postgres.last.as_ref().map(|p| DatabaseStatus {
            version: p.version.clone(),
            size_bytes: p.database_size_bytes,
        });
        (chain, electrs, database)
    }
}

/// Whether `new` differs from the last published observation enough to be written to status.
/// Sizes, peers and mempool drift on every poll; they ride along with the next meaningful
/// change. During IBD progress is published at most every `ibd_interval`.
pub fn is_significant(
    published: Option<&Observation>,
    new: &Observation,
    since_published: std::time::Duration,
    ibd_interval: std::time::Duration,
) -> bool {
    let Some(old) = published else { return true };
    let flags = |o: &Observation| {
        (
            o.chain_synced(),
            o.index_synced(),
            o.database_ready(),
            o.cache_ready(),
            o.lost_services(),
            o.bitcoind.last.as_ref().map(|b| b.initial_block_download),
            o.bitcoind.last.is_some(),
            o.postgres.last.is_some(),
            o.redis.last.is_some(),
            o.electrs.as_ref().map(|e| e.last.is_some()),
            o.database_bootstrapped,
            // NotProbedYet -> Unreachable is a flip of the condition's reason.
            (
                o.bitcoind.unreachable(),
                o.postgres.unreachable(),
                o.redis.unreachable(),
                o.electrs.as_ref().map(ServiceState::unreachable),
            ),
        )
    };
    if flags(old) != flags(new) {
        return true;
    }
    let blocks = |o: &Observation| o.bitcoind.last.as_ref().map(|b| (b.blocks, b.headers));
    let indexed = |o: &Observation| {
        o.electrs
            .as_ref()
            .and_then(|e| e.last.as_ref())
            .map(|e| e.indexed_height)
    };
    let moved = blocks(old) != blocks(new) || indexed(old) != indexed(new);
    let in_ibd = new
        .bitcoind
        .last
        .as_ref()
        .is_some_and(|b| b.initial_block_download)
        || !new.index_synced();
    moved && (!in_ibd || since_published >= ibd_interval)
}
