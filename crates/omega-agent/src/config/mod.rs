//! Agent configuration (`spec/agent.md` §2).
