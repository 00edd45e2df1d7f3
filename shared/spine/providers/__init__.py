"""Provider adapters. Each SDK is imported only when a request needs it."""
