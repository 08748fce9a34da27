//! The control socket: typed requests/responses shared by daemon and CLI.
