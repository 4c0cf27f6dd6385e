print("twofactor")
