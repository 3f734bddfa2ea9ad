"""The recipe's generation stages: pure logic from records to engine requests and back."""
