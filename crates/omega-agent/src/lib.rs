//! omega-agent
