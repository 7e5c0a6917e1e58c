//! weir-control (grows in the control issue).
