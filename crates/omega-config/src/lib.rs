//! omega-config
