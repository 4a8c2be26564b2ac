//! Tests against real services that tests/run.sh starts and names in environment variables:
//! PostgreSQL (BLOCKSIGHT_TEST_POSTGRES_URL), Redis (BLOCKSIGHT_TEST_REDIS_URL) and an S3
//! server, moto (BLOCKSIGHT_TEST_S3_ENDPOINT), beside the fake bitcoind and Electrum servers of
//! blocksight_testkit::fakes. A test that needs a service fails when its variable is not set,
//! so CI never skips it silently; BLOCKSIGHT_ALLOW_NO_SERVICES=1 makes it skip instead.
//!
//!   cargo test --test services   # after tests/run.sh's services, or with the variables set

mod backup_programs;
mod chain;
mod probes;
