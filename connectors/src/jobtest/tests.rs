//! Tests of the job-test harness.
