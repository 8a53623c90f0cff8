//! omega-cloud
