//! Table discovery and enrollment verdicts (`spec/agent.md` §5).
