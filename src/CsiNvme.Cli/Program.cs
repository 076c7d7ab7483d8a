Console.Error.WriteLine("csinvme: under construction"); return 1;
