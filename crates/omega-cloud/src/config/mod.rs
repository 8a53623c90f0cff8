//! Cloud configuration (`spec/cloud.md` §2).
