Console.Error.WriteLine("server: under construction"); return 1;
