//! omega-testkit
