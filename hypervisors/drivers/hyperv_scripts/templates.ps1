# templates: the VHDX files in the template folder that VMs are cloned from.
# Parameters ($p): {"dir": template folder}.
# Returns: {"templates": [{"name": file name, "size": virtual size, "file": bytes on disk}]}
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
[Console]::OutputEncoding = [Text.Encoding]::UTF8
trap { $m = "$($_.Exception.Message)"; if ($m -notlike 'PUREBOOT|*') { $m = 'PUREBOOT|{0}|{1}' -f $_.CategoryInfo.Category, $m }; throw $m }
$t = @(Get-ChildItem -LiteralPath $p.dir -Filter *.vhdx -File | ForEach-Object {
  $d = Get-VHD -Path $_.FullName
  [ordered]@{name = $_.Name; size = $d.Size; file = $d.FileSize}
})
ConvertTo-Json -Compress -Depth 5 -InputObject ([ordered]@{templates = $t})
