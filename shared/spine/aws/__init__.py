"""AWS adapters. boto3 is imported and its clients created on first use only."""
