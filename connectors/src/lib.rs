//! iotql-connectors
