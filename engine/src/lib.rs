//! iotql-engine
